"""The map's per-voxel work as dense tensor functions (no data-dependent shapes, so that
``torch.compile`` can fuse each into one loop) and :class:`Kernels`, which runs them eager,
compiled, or in place of them the C pass of :mod:`~ssc_core.mapping.native`."""
from typing import NamedTuple

import torch

from . import evidence, native
from .evidence import UNKNOWN


def frame_codes(codes: torch.Tensor, base: torch.Tensor, steps: torch.Tensor,
                padded_shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame voxel holding each map voxel centre of B blocks.

    Args:
        codes: (P,) uint8, the frame's codes (class, or UNKNOWN) flattened from ``padded_shape``,
            the frame grid with a border of one UNKNOWN voxel on each side.
        base: (B, 3) float32, the first voxel centre of each block in padded frame voxel units
            (plus the tie-breaking offset); steps: (V, 3) float32, the offsets of a block's voxels.
    Returns:
        index (B, V) int32 into ``codes`` (the border where a centre falls outside the frame), the
        codes there (B, V) uint8, and whether a block sees any class (B,) bool.
    """
    index = None
    for axis, n in enumerate(padded_shape):  # floor by truncation of values clamped to [0, n - 1]
        coord = (base[:, axis, None] + steps[None, :, axis]).clamp(0, n - 1).int()
        index = coord if index is None else index * n + coord
    code = codes[index]
    return index, code, (code != UNKNOWN).any(1)


def fuse(state: torch.Tensor, code: torch.Tensor, weight) -> torch.Tensor:
    """Blocks' state (H, V, W) uint8 after observing ``code`` (H, V) uint8 (UNKNOWN: not seen)
    with ``weight`` (an int, or (H, V) deficit units)."""
    flat_weight = weight.reshape(-1) if isinstance(weight, torch.Tensor) else weight
    new = evidence.observe(state.reshape(-1, state.shape[-1]), code.reshape(-1), flat_weight,
                           seen=code.reshape(-1) != UNKNOWN)
    return new.reshape(state.shape)


def fuse_sparse(state: torch.Tensor, code: torch.Tensor, weight) -> torch.Tensor:
    """:func:`fuse` for eager execution, with less work: voxels whose best class is observed again
    only see every other class fall further behind (what :func:`~ssc_core.mapping.evidence.observe`
    computes for them); the general update runs on the rest alone."""
    k = evidence.slots_of(state)
    flat = state.reshape(-1, state.shape[-1]).clone()
    code = code.reshape(-1)
    per_voxel = isinstance(weight, torch.Tensor)
    weight = weight.reshape(-1) if per_voxel else weight
    again = (flat[:, 0] == code) & (code != UNKNOWN)   # slot 0 of a voxel without evidence is 255 too
    rows = again.nonzero()[:, 0]
    tail = flat[rows, k + 1:]
    if per_voxel:
        w = weight[rows].to(torch.uint8)[:, None]
        flat[rows, k + 1:] = torch.minimum(tail, evidence.CLAMP - w) + w
    else:
        flat[rows, k + 1:] = tail.clamp_max(evidence.CLAMP - weight) + weight
    rows = (~again & (code != UNKNOWN)).nonzero()[:, 0]
    flat[rows] = evidence.observe(flat[rows], code[rows], weight[rows] if per_voxel else weight)
    return flat.reshape(state.shape)


def map_rows(start: torch.Tensor, axes: list[torch.Tensor], table: torch.Tensor, extent: list[int],
             block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each voxel of a frame grid, the map voxel holding its centre.

    Args:
        start: (3,) float32, map coordinates of the first voxel centre, relative to the corner of
            the table's first block, less the tie-breaking offset (all values stay positive).
        axes: per frame axis a, (n_a, 3) float32, the map-coordinate step of each index along it.
        table: (prod(extent),) int64 slot of each block of the box (-1: none).
    Returns:
        rows (N,) int64 of the map's flat state (slot * V + voxel in block; slot 0 where none),
        found (N,) bool: the block exists. N = n_0 * n_1 * n_2, C order.
    """
    shift = block_size.bit_length() - 1
    block = inner = None
    for axis in range(3):  # ceil(x) - 1: the lower voxel on a boundary
        value = (start[axis] + axes[0][:, None, None, axis] + axes[1][None, :, None, axis]
                 + axes[2][None, None, :, axis]).ceil().int().reshape(-1) - 1
        b, i = value >> shift, value & (block_size - 1)
        block = b if block is None else block * extent[axis] + b
        inner = i if inner is None else inner * block_size + i
    slots = table[block]
    found = slots >= 0
    return slots.clamp_min(0) * block_size ** 3 + inner.long(), found


KINDS = ('auto', 'native', 'torch', 'torch_compile')


class Kernels:
    """The map's per-voxel work, in one of KINDS: ``native`` (CPU only: one pass in C over the
    blocks' voxels, in place, on torch's thread count; :mod:`~ssc_core.mapping.native`), ``torch``
    (eager tensor functions: :func:`frame_codes`, :func:`fuse_sparse`), ``torch_compile`` (the same
    through ``torch.compile``: :func:`fuse`; compiled once per process and shape class, the first
    call takes seconds to a minute), ``auto`` (native on a CPU where a C compiler builds it, else
    torch). Integration is :meth:`locate`, then the caller allocates the blocks it says are seen,
    then :meth:`fuse`; :func:`map_rows` serves crops."""

    def __init__(self, kind: str = 'auto', device='cpu'):
        if kind not in KINDS:
            raise ValueError(f'kernels: expected one of {", ".join(KINDS)}, got {kind!r}')
        cpu = torch.device(device).type == 'cpu'
        self.why_not_native = ''
        if kind in ('auto', 'native'):
            reason = native.library()[1] if cpu else f'it runs on the CPU, not {device}'
            if kind == 'native' and reason:
                raise ValueError(f'kernels native: {reason}')
            kind, self.why_not_native = ('torch', reason) if reason else ('native', '')
        self.kind = kind
        compiled = kind == 'torch_compile'
        self._frame_codes = torch.compile(frame_codes, dynamic=True) if compiled else frame_codes
        self._fuse = torch.compile(fuse, dynamic=True) if compiled else fuse_sparse
        self.map_rows = torch.compile(map_rows, dynamic=True) if compiled else map_rows

    def __str__(self) -> str:
        """'kernels KIND', and why not native where auto could not have it."""
        return f'kernels {self.kind}' + (f' ({self.why_not_native})' if self.why_not_native else '')

    def locate(self, labels: torch.Tensor, observed: torch.Tensor, base: torch.Tensor,
               steps: torch.Tensor) -> 'Located':
        """Where the map voxels of B blocks fall in the frame of ``labels`` (X, Y, Z) uint8,
        evidence where ``observed`` (X, Y, Z) bool; ``base`` (B, 3) and ``steps`` (V, 3) as in
        :func:`frame_codes`. ``.seen`` (B,) bool: the blocks holding the centre of an observed
        voxel. The C pass takes frames of up to ``native.MAX_FRAME_VOXELS``; larger ones go the
        torch way, to the same map."""
        if self.kind == 'native' and labels.numel() <= native.MAX_FRAME_VOXELS:
            codes = native.frame_codes(labels.contiguous(), observed.contiguous())
            steps = steps.T.contiguous()
            return Located(native.blocks_seen(codes, base, steps), codes, base, steps)
        codes = torch.nn.functional.pad(torch.where(observed, labels, UNKNOWN), (1, 1) * 3, value=UNKNOWN)
        index, code, seen = self._frame_codes(codes.reshape(-1), base, steps, codes.shape)
        return Located(seen, codes, base, steps, index, code)

    def fuse(self, state: torch.Tensor, slots: torch.Tensor, located: 'Located', weight) -> None:
        """Fuse the frame into ``state`` (S, V, W) uint8, in place, at ``slots`` (H,) int64 of the
        ``located.seen`` blocks; ``weight``: an int, or (X, Y, Z) int16 deficit units."""
        seen = located.seen
        if located.index is None:       # located by the C pass
            weight = weight.contiguous() if isinstance(weight, torch.Tensor) else weight
            native.fuse_blocks(state, slots, located.codes, weight, located.base[seen].contiguous(),
                               located.steps)
            return
        index, code = located.index[seen], located.code[seen]
        if isinstance(weight, torch.Tensor):
            weight = torch.nn.functional.pad(weight, (1, 1) * 3).reshape(-1)[index]
        state[slots] = self._fuse(state[slots], code, weight)


class Located(NamedTuple):
    """What :meth:`Kernels.locate` found, for :meth:`Kernels.fuse`."""
    seen: torch.Tensor
    codes: torch.Tensor      # the frame's classes, UNKNOWN where not observed (torch kinds: padded)
    base: torch.Tensor
    steps: torch.Tensor
    index: torch.Tensor | None = None    # torch kinds: frame_codes' index and code
    code: torch.Tensor | None = None
