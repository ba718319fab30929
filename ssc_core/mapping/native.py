"""The map's integration in C (``native.c``), built on first use with the system's C compiler and
cached per user and CPU: the per-voxel work as one pass, in place, on several threads (it runs without
the GIL). :func:`library` gives it, or None with the reason when there is no compiler."""
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name('native.c')
FLAGS = ('-O3', '-std=c11', '-shared', '-fPIC', '-pthread', '-ffp-contract=off', '-fno-trapping-math')
"""No contraction into fused multiply-adds: float32 results are torch's, bit for bit."""
MAX_FRAME_VOXELS = 1 << 24
"""The largest frame the C pass takes: it forms flat indices in float32, exact up to 2^24."""
TUNED = ('-march=native',)
"""Tried first (vector units of this CPU: about twice as fast); the library is kept per CPU."""


def cache_dir() -> Path:
    """Where built libraries are kept: $SSC_CACHE_DIR, else $XDG_CACHE_HOME/ssc_ros, else ~/.cache/ssc_ros
    (where that cannot be written: a folder of this user's in the temporary directory)."""
    if os.environ.get('SSC_CACHE_DIR'):
        return Path(os.environ['SSC_CACHE_DIR'])
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'ssc_ros'


@lru_cache(maxsize=None)
def library() -> tuple[ctypes.CDLL | None, str]:
    """(the loaded library, '') or (None, why not); built once per source, compiler, flags and CPU.

    A cached library is loaded only if this user owns it, nobody else may write it and its bytes
    have the SHA-256 written beside it when it was built; otherwise it is built again."""
    compiler = shlex.split(os.environ.get('CC', '')) or [shutil.which('cc') or shutil.which('gcc') or '']
    if not compiler[0]:
        return None, 'no C compiler (cc, gcc or $CC) found'
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b'\0'.join([source, ' '.join(compiler + list(FLAGS + TUNED)).encode(), _cpu()]))
    name = f'map_kernels-{key.hexdigest()[:16]}.so'
    reasons = []
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f'ssc_ros-{os.getuid()}'):
        path = folder / name
        try:
            if not _trusted(path):
                built = _build(compiler, path)
                if built:
                    return None, built
        except (OSError, subprocess.SubprocessError) as e:
            reasons.append(f'could not build {path}: {e}')
            continue
        try:
            return _bind(ctypes.CDLL(str(path))), ''
        except OSError as e:
            reasons.append(f'could not load {path}: {e}')
    return None, '; '.join(reasons)


def _trusted(path: Path) -> bool:
    """Whether ``path`` is a library this user built: owned by them, writable by nobody else, of
    the recorded digest (a truncated or foreign file would crash the process when loaded)."""
    try:
        info = path.stat()
        digest = path.with_suffix('.sha256').read_text().strip()
    except OSError:
        return False
    return (info.st_uid == os.getuid() and not info.st_mode & 0o022
            and hashlib.sha256(path.read_bytes()).hexdigest() == digest)


def _build(compiler: list[str], path: Path) -> str:
    """Build the library at ``path`` (atomically, with its digest beside it); '' or why it failed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in path.parent.glob('tmp*'):   # of builds killed half-way, over an hour ago
        if stale.is_dir() and time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        built = Path(tmp) / path.name
        for flags in (TUNED + FLAGS, FLAGS):
            result = subprocess.run([*compiler, *flags, str(SOURCE), '-o', str(built)],
                                    capture_output=True, text=True, timeout=120)
            if result.returncode == 0:
                break
        else:
            return (f'{" ".join(compiler)} failed on {SOURCE} (exit {result.returncode}): '
                    f'{result.stderr.strip()[-500:]}')
        built.chmod(0o755)
        digest = Path(tmp) / 'digest'
        digest.write_text(hashlib.sha256(built.read_bytes()).hexdigest())
        os.replace(built, path)
        os.replace(digest, path.with_suffix('.sha256'))
    return ''


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.ssc_frame_codes.argtypes = [p, p, i64, p]
    lib.ssc_blocks_seen.argtypes = [p, p, p, p, i64, i64, p, i32]
    lib.ssc_fuse_blocks.argtypes = [p, p, i32, p, p, p, p, i64, i64, p, i32, i32]
    lib.ssc_frame_codes.restype = None
    lib.ssc_blocks_seen.restype = lib.ssc_fuse_blocks.restype = ctypes.c_int
    return lib


def frame_codes(labels: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """(X, Y, Z) uint8: ``labels`` (X, Y, Z) uint8 where ``observed`` (X, Y, Z) bool, else UNKNOWN."""
    _expect(labels.shape == observed.shape, f'labels {tuple(labels.shape)} and observed '
            f'{tuple(observed.shape)} of one shape')
    codes = torch.empty_like(labels)
    library()[0].ssc_frame_codes(_pointer(labels, torch.uint8), _pointer(observed, torch.bool),
                                 labels.numel(), _pointer(codes, torch.uint8))
    return codes


def blocks_seen(codes: torch.Tensor, base: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether each block holds the centre of an observed frame voxel.

    codes: (X, Y, Z) uint8 (:func:`frame_codes`); base: (B, 3) float32 as in
    :func:`~ssc_core.mapping.kernels.frame_codes` (units of the frame padded by one voxel) and
    steps: (3, V) float32, its steps transposed.
    """
    _check_blocks(codes, base, steps)
    seen = torch.zeros(len(base), dtype=torch.uint8)
    shape = _shape(codes)
    status = library()[0].ssc_blocks_seen(
        _pointer(codes, torch.uint8), _pointer(shape, torch.int64), _pointer(base, torch.float32),
        _pointer(steps, torch.float32), len(base), steps.shape[1], _pointer(seen, torch.uint8),
        torch.get_num_threads())
    _check(status)
    return seen.bool()


def fuse_blocks(state: torch.Tensor, slots: torch.Tensor, codes: torch.Tensor, weight, base: torch.Tensor,
                steps: torch.Tensor) -> None:
    """Fuse the frame's ``codes`` (X, Y, Z) uint8 into ``state`` (S, V, 2K + 1) uint8 at the blocks'
    ``slots`` (B,) int64, in place, with ``weight`` an int or (X, Y, Z) int16 deficit units;
    ``base`` (B, 3) and ``steps`` as in :func:`blocks_seen`."""
    _check_blocks(codes, base, steps)
    per_voxel = isinstance(weight, torch.Tensor)
    _expect(state.dim() == 3 and state.shape[1] == steps.shape[1] and state.shape[2] % 2 == 1,
            f'state (S, {steps.shape[1]}, 2K + 1), got {tuple(state.shape)}')
    _expect(slots.shape == (len(base),), f'slots ({len(base)},), got {tuple(slots.shape)}')
    _expect(not len(slots) or 0 <= int(slots.min()) <= int(slots.max()) < len(state),
            f'slots within 0..{len(state) - 1}')
    _expect(not per_voxel or weight.shape == codes.shape, f'weight of shape {tuple(codes.shape)}')
    shape = _shape(codes)
    status = library()[0].ssc_fuse_blocks(
        _pointer(codes, torch.uint8), _pointer(weight, torch.int16) if per_voxel else None,
        0 if per_voxel else int(weight), _pointer(shape, torch.int64), _pointer(base, torch.float32),
        _pointer(steps, torch.float32), _pointer(slots, torch.int64), len(slots), steps.shape[1],
        _pointer(state, torch.uint8), (state.shape[-1] - 1) // 2, torch.get_num_threads())
    _check(status)


def _check_blocks(codes: torch.Tensor, base: torch.Tensor, steps: torch.Tensor) -> None:
    _expect(codes.dim() == 3 and codes.numel() <= MAX_FRAME_VOXELS,
            f'codes (X, Y, Z) of at most {MAX_FRAME_VOXELS} voxels, got {tuple(codes.shape)}')
    _expect(base.dim() == 2 and base.shape[1] == 3, f'base (B, 3), got {tuple(base.shape)}')
    _expect(steps.dim() == 2 and steps.shape[0] == 3, f'steps (3, V), got {tuple(steps.shape)}')


def _expect(ok: bool, what: str) -> None:
    """The C pass trusts its arguments: every shape and index is checked here first."""
    if not ok:
        raise ValueError(f'map C pass: expected {what}')


def _check(status: int) -> None:
    if status != 0:
        raise MemoryError('the map\'s C pass could not allocate its buffers')


def _shape(grid: torch.Tensor) -> torch.Tensor:
    """(3,) int64, kept by the caller while the C code reads it."""
    return torch.tensor(grid.shape, dtype=torch.int64)


def _cpu() -> bytes:
    """What identifies this CPU's instruction set (a home directory may be shared by machines)."""
    try:
        lines = Path('/proc/cpuinfo').read_text().splitlines()
    except OSError:
        lines = []
    wanted = [line for line in lines if line.split(':')[0].strip() in ('flags', 'Features', 'model name')]
    return '\n'.join(dict.fromkeys(wanted) or [platform.machine(), platform.processor()]).encode()


def _pointer(tensor: torch.Tensor, dtype: torch.dtype) -> int:
    if tensor.dtype != dtype or not tensor.is_contiguous() or tensor.device.type != 'cpu':
        layout = 'contiguous' if tensor.is_contiguous() else 'non-contiguous'
        raise TypeError(f'expected a contiguous CPU {dtype} tensor, got a {layout} {tensor.dtype} tensor '
                        f'on {tensor.device}')
    return tensor.data_ptr()
