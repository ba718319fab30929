"""Semantic maps on disk: ``.npz`` (the whole evidence, round-trips exactly) and ``.ply`` (the
occupied voxels' centres with class colours, for CloudCompare, MeshLab, Open3D, RViz).

The npz holds ``meta`` (JSON: format, settings, last stamp and pose), ``coords`` (B, 3) int64 block
coordinates, ``state`` (B, V, 2K + 1) uint8 evidence (:mod:`~ssc_core.mapping.evidence`) and
``decayed_at`` (B,) float64. Files are written atomically; reading checks every field before use.
"""
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_path
from ..labels import class_colors
from . import evidence
from .semantic_map import MAX_BLOCK_COORD, MapError, SemanticMap

FORMAT = 'ssc_ros semantic map'
VERSION = 1
ARRAYS = ('coords', 'state', 'decayed_at')
SETTINGS = ('voxel_size', 'class_names', 'grid_origin', 'block_size', 'slots', 'hit_probability',
            'change_after', 'half_life', 'radius', 'max_jump')
POLICIES = ('half_life', 'radius', 'max_jump')
"""Settings a caller may change when loading a map (the others define what its evidence means)."""


def save_map(semantic_map: SemanticMap, path) -> Path:
    """Write the map's used blocks and settings to ``path`` (.npz), atomically."""
    m = semantic_map
    slots = m.used.nonzero()[:, 0]
    meta = {'format': FORMAT, 'version': VERSION,
            **{name: getattr(m, name) for name in SETTINGS},
            'grid_origin': m.grid_origin.tolist(), 'class_names': list(m.class_names),
            'last_stamp': m.last_stamp, 'frames': m.frames,
            'last_pose': None if m.last_pose is None else m.last_pose.tolist()}
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        np.savez(f, meta=np.array(json.dumps(meta)), coords=m.coords[slots].cpu().numpy(),
                 state=m.state[slots].cpu().numpy(), decayed_at=m.decayed_at[slots].cpu().numpy())
    return path


def load_map(path, voxel_size: float | None = None, class_names=None, device='cpu', kernels: str = 'auto',
             **policies) -> SemanticMap:
    """Read a map written by :func:`save_map`.

    ``voxel_size`` and ``class_names``, when given, must be the file's (MapError naming the
    field, expected and got, otherwise); ``policies`` (half_life, radius, max_jump) replace the
    file's. Any malformed field is a MapError naming the file and the field.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ('meta', *ARRAYS) if k not in data.files]
            if missing:
                raise MapError(f'{path}: not a semantic map file (missing {", ".join(missing)})')
            meta = json.loads(str(data['meta']))
            arrays = {k: data[k] for k in ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        if isinstance(e, MapError):
            raise
        raise MapError(f'{path}: cannot read a semantic map ({type(e).__name__}: {e})') from None
    if not isinstance(meta, dict) or meta.get('format') != FORMAT or meta.get('version') != VERSION:
        raise MapError(f'{path}: not a semantic map file of version {VERSION}')
    checks = {'voxel_size': None if voxel_size is None else float(voxel_size),
              'class_names': None if class_names is None else list(class_names)}
    for name, expected in checks.items():
        if expected is not None and meta.get(name) != expected:
            raise MapError(f'{path}: {name} is {meta.get(name)!r}, expected {expected!r} (a map made for '
                           'another network)')
    unknown = sorted(set(policies) - set(POLICIES))
    if unknown:
        raise ValueError(f'load_map: only {", ".join(POLICIES)} can be changed, not {", ".join(unknown)}')
    settings = {name: meta.get(name) for name in SETTINGS} | policies
    try:
        semantic_map = SemanticMap(**settings, device=device, kernels=kernels)
    except (TypeError, ValueError) as e:
        raise MapError(f'{path}: bad settings ({e})') from None
    _restore(semantic_map, arrays, meta, path)
    return semantic_map


def _restore(m: SemanticMap, arrays: dict, meta: dict, path: Path) -> None:
    """Check the file's arrays and state against the map's settings, then adopt them."""
    coords, state, decayed_at = arrays['coords'], arrays['state'], arrays['decayed_at']
    n = len(coords)
    width = 2 * m.slots + 1
    expected = {'coords': ((n, 3), np.int64), 'state': ((n, m.block_voxels, width), np.uint8),
                'decayed_at': ((n,), np.float64)}
    for name, (shape, dtype) in expected.items():
        got = arrays[name]
        if got.shape != shape or got.dtype != dtype:
            raise MapError(f'{path}: {name} is {got.dtype} {got.shape}, expected {np.dtype(dtype)} {shape}')
    k = m.slots
    classes = state[..., :k]
    problems = {
        'coords': np.abs(coords).max(initial=0) >= MAX_BLOCK_COORD or len(np.unique(coords, axis=0)) != n,
        'state': (((classes >= m.num_classes) & (classes != evidence.EMPTY_SLOT)).any()
                  or (state[..., k:] > evidence.CLAMP).any()),
        'decayed_at': not np.isfinite(decayed_at).all()}
    for name, bad in problems.items():
        if bad:
            raise MapError(f'{path}: {name} holds values a map cannot have')
    stamp, pose, frames = meta.get('last_stamp'), meta.get('last_pose'), meta.get('frames')
    try:
        m.last_pose = None if pose is None else np.array(pose, np.float64).reshape(4, 4)
        m.last_stamp = None if stamp is None else float(stamp)
        m.frames = int(frames)
    except (TypeError, ValueError):
        raise MapError(f'{path}: last_stamp, last_pose or frames malformed') from None
    # C order whatever the file's (an .npy header may say fortran_order): the C pass reads rows
    m.coords, m.state, m.decayed_at = (torch.from_numpy(np.ascontiguousarray(a)).to(m.device)
                                       for a in (coords, state, decayed_at))
    m.used = torch.ones(n, dtype=torch.bool, device=m.device)


def write_ply(path, centres: np.ndarray, labels: np.ndarray, class_names) -> Path:
    """A binary PLY of points (N, 3) with the class colours and a ``label`` property, atomically."""
    centres = np.asarray(centres, np.float32)
    labels = np.asarray(labels, np.uint8)
    vertex = np.empty(len(labels), [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('red', 'u1'),
                                    ('green', 'u1'), ('blue', 'u1'), ('label', 'u1')])
    vertex['x'], vertex['y'], vertex['z'] = centres.T
    colours = class_colors(class_names)[labels]
    vertex['red'], vertex['green'], vertex['blue'] = colours.T
    vertex['label'] = labels
    header = ('ply\nformat binary_little_endian 1.0\n'
              f'comment ssc_ros semantic map, classes: {" ".join(class_names)}\n'
              f'element vertex {len(labels)}\n'
              'property float x\nproperty float y\nproperty float z\n'
              'property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar label\n'
              'end_header\n')
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(header.encode() + vertex.tobytes())
    return path


def occupied_points(semantic_map: SemanticMap) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 3) float32 (world metres) and classes (N,) of the map's occupied voxels
    (known, not empty)."""
    voxels, labels = semantic_map.voxels()
    keep = labels != 0
    return semantic_map.centres(voxels[keep]), labels[keep]
