"""A semantic voxel map in a fixed world frame, fused from per-frame completions.

The map is grown in blocks of ``block_size``³ voxels (block hashing, as voxblox and nvblox),
allocated where frames are integrated and dropped outside ``radius`` of the latest pose. Each
voxel holds class evidence (:mod:`ssc_core.mapping.evidence`). Frames and map share the voxel
size; a frame's grid is placed in the world by ``world_from_grid`` (4, 4). Map voxel (i, j, k)
spans ``grid_origin + [i, i + 1) * voxel_size`` (and so on) in the world frame: the map's lattice
is that of a frame's grid at the identity pose.

Resampling between a frame's grid and the map is by nearest voxel, in both directions: a map
voxel takes the frame voxel that holds its centre (integration), a frame voxel the map voxel
that holds its centre (:meth:`SemanticMap.crop`). Nearest, because class labels cannot be
interpolated, and evidence of neighbours of different classes is better not mixed. It is exact
for translations by whole voxels (each map voxel sees exactly one frame voxel, and back; half
voxels too, see TIE), and for any pose it fills every map voxel in view exactly once (forward
splatting would leave holes under rotation), at up to half a voxel of displacement.

All tensors live on ``device`` (CPU or CUDA); arguments may be numpy arrays or tensors.
"""
import math

import numpy as np
import torch

from ..geometry import check_rigid
from . import evidence
from .evidence import EMPTY_SLOT, UNKNOWN
from .kernels import Kernels

TIE = 1e-3
"""Voxel units within which a centre counts as on a voxel boundary: integration then takes the
upper frame voxel and cropping the lower map voxel, so that crop undoes integrate for translations
by half voxels too (a 1 m step on a 0.4 m grid)."""
MAX_BLOCK_COORD = 1 << 20
"""Blocks lie within ±2^20 blocks of the map origin per axis (1,677 km for 0.2 m voxels)."""


class MapError(ValueError):
    """A frame, pose or file the map refuses; the map is left as it was."""


class PoseJump(MapError):
    """A frame refused because its pose moved more than ``max_jump`` since the last frame."""


class SemanticMap:
    """Fuses labelled voxel grids into one map.

    Args:
        voxel_size: metres per voxel, the frames' and the map's.
        class_names: the classes (index 0 is "empty"); the frames' labels index them.
        grid_origin: (3,) metres, the corner of voxel (0, 0, 0) in a frame's grid frame.
        block_size: voxels per block side, a power of two.
        slots: classes kept per voxel (K of :mod:`~ssc_core.mapping.evidence`; len(class_names): exact).
        hit_probability: how often a frame's label is right; one observation adds
            ``log(p (C - 1) / (1 - p))`` to its class (with probabilities, ``p`` is each voxel's own).
        change_after: contrary observations that change the class of a voxel at the clamp.
        half_life: seconds for old evidence to halve (None: it never decays).
        radius: metres around the latest pose beyond which blocks are dropped (None: never).
            It should exceed the farthest voxel of a frame's grid from the grid frame's origin,
            or the map drops what it has just seen.
        max_jump: metres between consecutive poses beyond which a frame is refused as a
            teleport (None: no check).
        device: where the evidence lives.
        kernels: how the per-voxel work runs, one of :data:`~ssc_core.mapping.kernels.KINDS`
            (``auto``: in C on a CPU where a compiler builds it, else torch; see
            :class:`~ssc_core.mapping.kernels.Kernels`).
    """

    def __init__(self, voxel_size: float, class_names, grid_origin, block_size: int = 8, slots: int = 3,
                 hit_probability: float = 0.7, change_after: float = 4, half_life: float | None = None,
                 radius: float | None = None, max_jump: float | None = 10.0, device='cpu',
                 kernels: str = 'auto'):
        num_classes = len(class_names)
        checks = {'voxel_size': (voxel_size > 0, '> 0'),
                  'block_size': (block_size in (2, 4, 8, 16, 32), 'one of 2, 4, 8, 16, 32'),
                  'slots': (1 <= slots <= num_classes, f'1..{num_classes}'),
                  'hit_probability': (1 / num_classes < hit_probability < 1, f'in (1/{num_classes}, 1)'),
                  'change_after': (change_after >= 1, '>= 1')}
        optional = {'half_life': half_life, 'radius': radius, 'max_jump': max_jump}
        checks.update({name: (value is None or value > 0, '> 0 or None') for name, value in optional.items()})
        if not 2 <= num_classes <= EMPTY_SLOT:   # class ids are bytes, 255 is no class
            raise ValueError(f'class_names: expected 2..{EMPTY_SLOT} classes, got {num_classes}')
        for name, (ok, expected) in checks.items():
            if not ok:
                raise ValueError(f'{name}: expected {expected}, got {locals()[name]!r}')
        self.voxel_size = float(voxel_size)
        self.class_names = tuple(class_names)
        self.grid_origin = np.asarray(grid_origin, np.float64).reshape(3)
        self.block_size = int(block_size)
        self.slots = int(slots)
        self.hit_probability = float(hit_probability)
        self.change_after = float(change_after)
        self.half_life = half_life
        self.radius = radius
        self.max_jump = max_jump
        self.device = torch.device(device)
        self.kernels = Kernels(kernels, self.device)
        hit = evidence.observation_weight(hit_probability, num_classes)    # nats
        self.unit = (self.change_after - 0.5) * hit / evidence.CLAMP        # nats per deficit unit
        self.hit_weight = evidence.to_units(hit, self.unit)
        self.clear()

    # ------------------------------------------------------------------ state
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def block_voxels(self) -> int:
        return self.block_size ** 3

    def clear(self) -> None:
        """Forget everything: blocks, last pose and stamp (the capacity is freed too)."""
        self.coords = torch.zeros((0, 3), dtype=torch.int64, device=self.device)     # block coords per slot
        self.used = torch.zeros(0, dtype=torch.bool, device=self.device)
        self.decayed_at = torch.zeros(0, dtype=torch.float64, device=self.device)   # stamp of its evidence
        self.state = evidence.empty_state((0, self.block_voxels), self.slots, self.device)
        self.last_stamp: float | None = None
        self.last_pose: np.ndarray | None = None
        self.frames = 0

    @property
    def num_blocks(self) -> int:
        return int(self.used.sum())

    @property
    def nbytes(self) -> int:
        """Bytes held by the map's tensors (its capacity, used or not)."""
        tensors = (self.coords, self.used, self.decayed_at, self.state)
        return sum(t.element_size() * t.nelement() for t in tensors)

    # ------------------------------------------------------------------ integration
    def integrate(self, frame, observed, world_from_grid, stamp: float, logits: bool = False,
                  confidence=None) -> None:
        """Fuse one frame.

        Args:
            frame: (X, Y, Z) integer class ids, or (C, X, Y, Z) class probabilities
                (``logits=True``: logits); a probability's maximum is the observation's confidence.
            confidence: with class ids, (X, Y, Z) their probabilities (None: ``hit_probability``).
            observed: (X, Y, Z) bool, the voxels this frame is evidence for (its field of view).
            world_from_grid: (4, 4) pose of the frame's grid in the world.
            stamp: seconds; never earlier than the previous frame's.

        Raises MapError, with the map untouched, for a pose that is not rigid or jumps more than
        ``max_jump`` from the previous one, a stamp earlier than the previous one, labels outside
        the classes, probabilities or logits that are not finite, shapes that do not agree.
        """
        pose = self._check_pose(world_from_grid, stamp)
        labels, weight = self._observations(frame, logits, confidence)
        observed = _tensor(observed, self.device)
        if observed.shape != labels.shape or observed.dtype != torch.bool:
            raise MapError(f'frame refused: observed must be a bool mask of shape {tuple(labels.shape)}, '
                           f'got {observed.dtype} {tuple(observed.shape)}')
        box = _bounds(observed) if observed.numel() else None
        if box is not None:
            self._integrate_box(labels, observed, weight, pose, float(stamp), *box)
        self.last_stamp, self.last_pose = float(stamp), pose
        self.frames += 1
        self._drop_far_blocks(pose)

    def _check_pose(self, world_from_grid, stamp: float) -> np.ndarray:
        try:
            pose = check_rigid(world_from_grid, 'world_from_grid')
        except ValueError as e:
            raise MapError(f'frame refused: {e}') from None
        if not math.isfinite(stamp):
            raise MapError(f'frame refused: stamp {stamp} is not finite')
        if self.last_stamp is not None and stamp < self.last_stamp:
            raise MapError(f'frame refused: stamp {stamp:.3f} s is earlier than the last integrated '
                           f'frame\'s {self.last_stamp:.3f} s (time went back: reset the map)')
        if self.last_pose is not None and self.max_jump is not None:
            jump = float(np.linalg.norm(pose[:3, 3] - self.last_pose[:3, 3]))
            if jump > self.max_jump:
                raise PoseJump(f'frame refused: the pose jumped {jump:.2f} m since the last frame '
                               f'(max_jump {self.max_jump:g} m; relocalised? reset the map)')
        return pose

    def _observations(self, frame, logits: bool, confidence):
        """(labels (X, Y, Z) uint8, weight: deficit units, an int or (X, Y, Z) int16)."""
        frame = _tensor(frame, self.device)
        if frame.dim() == 3 and not frame.is_floating_point() and frame.dtype != torch.bool:
            low = 0 if frame.dtype == torch.uint8 or not frame.numel() else int(frame.min())
            high = int(frame.max()) if frame.numel() else 0
            if low < 0 or high >= self.num_classes:
                raise MapError(f'frame refused: labels outside 0..{self.num_classes - 1} '
                               f'(min {low}, max {high})')
            if confidence is None:
                return frame.to(torch.uint8), self.hit_weight
            confidence = _tensor(confidence, self.device)
            if confidence.shape != frame.shape or not bool(torch.isfinite(confidence).all()):
                raise MapError(f'frame refused: confidence must be finite, of shape {tuple(frame.shape)}')
            return frame.to(torch.uint8), self._weight(confidence)
        what = 'logits' if logits else 'probabilities'
        if frame.dim() != 4 or frame.shape[0] != self.num_classes or not frame.is_floating_point():
            raise MapError(f'frame refused: expected (X, Y, Z) integer labels or ({self.num_classes}, '
                           f'X, Y, Z) float {what}, got {frame.dtype} {tuple(frame.shape)}')
        if not bool(torch.isfinite(frame).all()):
            raise MapError(f'frame refused: {what} are not finite')
        probs = frame.float().softmax(0) if logits else frame.float()
        confidence, labels = probs.max(0)
        return labels.to(torch.uint8), self._weight(confidence)

    def _weight(self, confidence: torch.Tensor) -> torch.Tensor:
        return evidence.to_units(evidence.observation_weight(confidence, self.num_classes), self.unit)

    def _integrate_box(self, labels, observed, weight, pose, stamp, lo, hi) -> None:
        """Integrate the frame, whose observed voxels lie in the index box [lo, hi)."""
        rotation, offset = self._grid_to_map(pose)
        blocks = self._blocks_near(rotation, offset, lo, hi)
        b = self.block_size
        base = (blocks.cpu().numpy() * b + 0.5 - offset) @ rotation + 1 + TIE   # padded frame voxel units
        steps = np.indices((b, b, b)).reshape(3, -1).T @ rotation
        located = self.kernels.locate(labels, observed, self._float(base), self._float(steps))
        if not bool(located.seen.any()):
            return
        slots = self._allocate(blocks[located.seen])
        self._decay(slots, stamp)
        self.kernels.fuse(self.state, slots, located, weight)

    def _blocks_near(self, rotation, offset, lo, hi) -> torch.Tensor:
        """(B, 3) int64 coordinates of the map blocks that may hold a centre of the frame voxels
        in the index box [lo, hi): those within half a block diagonal of the box."""
        b = self.block_size
        span = _corners(lo, hi) @ rotation.T + offset
        first = np.floor(span.min(0)).astype(np.int64) // b
        last = np.floor(span.max(0)).astype(np.int64) // b
        if np.any(np.abs(np.concatenate([first, last])) >= MAX_BLOCK_COORD):
            raise MapError(f'frame refused: more than {MAX_BLOCK_COORD * b * self.voxel_size:.0f} m from '
                           'the map origin')
        axes = [np.arange(f, t + 1) for f, t in zip(first, last, strict=True)]
        blocks = np.stack(np.meshgrid(*axes, indexing='ij'), -1).reshape(-1, 3)
        grid = ((blocks + 0.5) * b - offset) @ rotation               # block centres, frame voxel units
        reach = b * math.sqrt(3) / 2
        near = np.all((grid > lo - reach) & (grid < hi + reach), 1)
        return torch.from_numpy(blocks[near]).to(self.device)

    # ------------------------------------------------------------------ reading
    def crop(self, world_from_grid, shape, probabilities: bool = False):
        """The map resampled into a frame's grid of ``shape`` at ``world_from_grid``.

        Returns labels (X, Y, Z) uint8 (UNKNOWN = 255 where the map has no evidence), and with
        ``probabilities`` also (C, X, Y, Z) float32 (uniform where there is no evidence), as of
        the last integrated frame's stamp.
        """
        pose = check_rigid(world_from_grid, 'world_from_grid')
        rows, found = self._rows_of_grid(pose, shape)
        flat = self.state.view(-1, self.state.shape[-1])
        state = flat[rows]
        factor = self._decay_factor(rows // self.block_voxels, self.last_stamp)
        if factor is not None:
            state = evidence.decay(state, factor)
        labels = torch.where(found, evidence.best(state), UNKNOWN).reshape(shape)
        if not probabilities:
            return labels.cpu().numpy()
        probs = evidence.probabilities(state, self.num_classes, self.unit)
        probs = torch.where(found[:, None], probs, 1.0 / self.num_classes)
        return labels.cpu().numpy(), probs.T.reshape(self.num_classes, *shape).cpu().numpy()

    def _rows_of_grid(self, pose, shape) -> tuple[torch.Tensor, torch.Tensor]:
        """For each frame voxel (C order): the flat state row of the map voxel holding its centre
        and whether that voxel's block exists ((N,) int64, (N,) bool)."""
        b = self.block_size
        rotation, offset = self._grid_to_map(pose)
        span = _corners((0, 0, 0), shape) @ rotation.T + offset
        first = (np.floor(span.min(0)).astype(np.int64) - 1) // b        # a block below every voxel
        extent = (np.ceil(span.max(0)).astype(np.int64) // b) - first + 1   # blocks per axis
        start = rotation @ np.full(3, 0.5) + offset - first * b - TIE
        axes = [self._float(np.arange(n)[:, None] * rotation[:, a]) for a, n in enumerate(shape)]
        table = self._slot_table(*(torch.from_numpy(a).to(self.device) for a in (first, extent)))
        return self.kernels.map_rows(self._float(start), axes, table, [int(e) for e in extent], b)

    def _float(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array, np.float32)).to(self.device)

    def voxels(self, known_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Every voxel of the map: map voxel coordinates (N, 3) int64 and classes (N,) uint8
        (with ``known_only``, the voxels with evidence); see :meth:`centres`."""
        slots = self.used.nonzero()[:, 0]
        labels = self._labels_of(slots).reshape(-1)
        b = self.block_size
        local = torch.from_numpy(np.indices((b, b, b)).reshape(3, -1).T).to(self.device)
        coords = (self.coords[slots][:, None] * b + local[None]).reshape(-1, 3)
        if known_only:
            keep = labels != UNKNOWN
            labels, coords = labels[keep], coords[keep]
        return coords.cpu().numpy(), labels.cpu().numpy()

    def labels_box(self) -> tuple[np.ndarray, np.ndarray]:
        """The map as one dense array over the box of its blocks: labels (X, Y, Z) uint8 (UNKNOWN
        where there is no evidence) and the map voxel coordinates (3,) int64 of its voxel
        (0, 0, 0), whose centre is ``centres(corner)``. An empty map gives a (0, 0, 0) box.

        What the node publishes the map from (a cloud, a bird's-eye map): one byte per voxel of
        the box (a 60 m radius at 0.2 m, 600 x 600 x 40 voxels, is 14 MB), not coordinates per voxel.
        """
        slots = self.used.nonzero()[:, 0]
        if not len(slots):
            return np.full((0, 0, 0), UNKNOWN, np.uint8), np.zeros(3, np.int64)
        b = self.block_size
        labels = self._labels_of(slots).reshape(-1, b, b, b).cpu().numpy()
        coords = self.coords[slots].cpu().numpy()
        first = coords.min(0)
        rel = coords - first
        extent = rel.max(0) + 1
        box = np.full((extent[0], b, extent[1], b, extent[2], b), UNKNOWN, np.uint8)
        box[rel[:, 0], :, rel[:, 1], :, rel[:, 2], :] = labels   # block n, voxel (x, y, z) -> (X, Y, Z)
        return box.reshape(extent * b), first * b

    def _labels_of(self, slots: torch.Tensor) -> torch.Tensor:
        """(len(slots), block_voxels) uint8 best class of each voxel of ``slots`` as of the last stamp."""
        state = self.state[slots]
        factor = self._decay_factor(slots, self.last_stamp)
        if factor is not None:
            state = evidence.decay(state, factor)
        return evidence.best(state)

    def centres(self, voxels: np.ndarray) -> np.ndarray:
        """Map voxel coordinates (N, 3) → their centres (N, 3) float32, world metres."""
        centres = self.grid_origin + (np.asarray(voxels, np.float64) + 0.5) * self.voxel_size
        return centres.astype(np.float32)

    # ------------------------------------------------------------------ internals
    def _grid_to_map(self, pose) -> tuple[np.ndarray, np.ndarray]:
        """(R, c): continuous frame voxel coordinates u → map voxel coordinates m = R u + c
        (voxel i spans [i, i + 1) in both); u = R^T (m - c)."""
        rotation = pose[:3, :3]
        return rotation, (rotation @ self.grid_origin + pose[:3, 3] - self.grid_origin) / self.voxel_size

    def _slot_table(self, first: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
        """Flat (prod(extent),) int64 table of the slot of every block in the box of ``extent``
        blocks from block ``first`` (-1: no block)."""
        table = torch.full((int(extent.prod()),), -1, dtype=torch.int64, device=self.device)
        rel = self.coords - first
        inside = self.used & ((rel >= 0) & (rel < extent)).all(1)
        rel = rel[inside]
        table[(rel[:, 0] * extent[1] + rel[:, 1]) * extent[2] + rel[:, 2]] = inside.nonzero()[:, 0]
        return table

    def _allocate(self, blocks: torch.Tensor) -> torch.Tensor:
        """Slots (B,) of the distinct ``blocks`` (B, 3), allocating the missing ones."""
        first = blocks.min(0).values
        extent = blocks.max(0).values - first + 1
        rel = blocks - first
        slots = self._slot_table(first, extent)[(rel[:, 0] * extent[1] + rel[:, 1]) * extent[2] + rel[:, 2]]
        missing = slots < 0
        count = int(missing.sum())
        if count:
            free = (~self.used).nonzero()[:, 0]
            if len(free) < count:
                self._grow(count - len(free))
                free = (~self.used).nonzero()[:, 0]
            new = free[:count]
            self.coords[new] = blocks[missing]
            self.used[new] = True
            self.decayed_at[new] = self.last_stamp if self.last_stamp is not None else 0.0
            self.state[new] = evidence.empty_state((count, self.block_voxels), self.slots, self.device)
            slots[missing] = new
        return slots

    def _grow(self, at_least: int) -> None:
        """Capacity for at least ``at_least`` more blocks (at least doubling it)."""
        extra = max(at_least, len(self.used))
        self.state = torch.cat([self.state, evidence.empty_state((extra, self.block_voxels), self.slots,
                                                                 self.device)])
        for name, shape, dtype in (('coords', (extra, 3), torch.int64), ('used', extra, torch.bool),
                                   ('decayed_at', extra, torch.float64)):
            more = torch.zeros(shape, dtype=dtype, device=self.device)
            setattr(self, name, torch.cat([getattr(self, name), more]))

    def _decay_factor(self, slots: torch.Tensor, stamp: float | None) -> torch.Tensor | None:
        """Per slot, how much of its evidence is left at ``stamp`` (None: nothing decays)."""
        if self.half_life is None or stamp is None:
            return None
        return torch.pow(0.5, (stamp - self.decayed_at[slots]).clamp_min(0) / self.half_life).float()

    def _decay(self, slots: torch.Tensor, stamp: float) -> None:
        """Bring the evidence of ``slots`` to ``stamp``: blocks that have lost at least 1 % of it
        (below that, the rounding of deficits could keep them from ever decaying)."""
        factor = self._decay_factor(slots, stamp)
        if factor is None:
            return
        due = factor < 0.99
        slots, factor = slots[due], factor[due]
        self.state[slots] = evidence.decay(self.state[slots], factor)
        self.decayed_at[slots] = stamp

    def _drop_far_blocks(self, pose) -> None:
        if self.radius is None:
            return
        metres = self.block_size * self.voxel_size          # per block
        position = (pose[:3, 3] - self.grid_origin) / metres - 0.5    # in block coordinates
        offset = self.coords.float() - torch.from_numpy(position).float().to(self.device)
        self.used &= (offset * offset).sum(1) <= (self.radius / metres) ** 2


def _tensor(value, device) -> torch.Tensor:
    return torch.as_tensor(value if isinstance(value, torch.Tensor) else np.asarray(value), device=device)


def _corners(lo, hi) -> np.ndarray:
    """(8, 3) corners of the box [lo, hi]."""
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def _bounds(mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """The index box [lo, hi) of the True voxels of a (X, Y, Z) mask; None when there are none."""
    flags = mask.view(torch.uint8)       # uint8 maxima: many times faster than bool any()
    plane = flags.amax(0)
    hits = [flags.reshape(len(flags), -1).amax(1), plane.amax(1), plane.amax(0)]
    ranges = [h.nonzero()[:, 0] for h in hits]
    if not all(len(r) for r in ranges):
        return None
    return np.array([int(r[0]) for r in ranges]), np.array([int(r[-1]) + 1 for r in ranges])
