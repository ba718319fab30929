"""From a predicted label grid to what robots consume: voxel centres, colours, a 2-D occupancy map.

Pure numpy; the ROS node only packs these arrays into messages.
"""
from collections.abc import Sequence

import cv2
import numpy as np

from .labels import IGNORE_LABEL, class_colors

GROUND_CLASSES = frozenset({'road', 'parking', 'sidewalk', 'other-ground', 'terrain'})
OCCUPIED, FREE, UNKNOWN = 100, 0, -1
GROUND_BIT, OBSTACLE_BIT = 1, 2


def class_ids(class_names: Sequence[str], wanted: Sequence[str] | None) -> np.ndarray:
    """Ids of the named classes (all non-empty classes when ``wanted`` is empty/None)."""
    if not wanted:
        return np.arange(1, len(class_names))
    unknown = [n for n in wanted if n not in class_names]
    if unknown:
        raise ValueError(f'unknown classes {unknown}; known: {", ".join(class_names[1:])}')
    return np.array(sorted(class_names.index(n) for n in wanted))


def class_mask(labels: np.ndarray, classes) -> np.ndarray:
    """Bool grid of the voxels whose (uint8) label is one of ``classes`` (ids)."""
    table = np.zeros(256, np.uint8)
    table[np.asarray(classes, np.int64)] = 1
    return _lookup(labels, table).view(bool)


def _lookup(labels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[labels]`` for a uint8 grid and a 256-entry uint8 table (OpenCV's LUT: 5x numpy's)."""
    if not labels.size:   # OpenCV gives None for an empty array
        return np.empty(labels.shape, np.uint8)
    return cv2.LUT(np.ascontiguousarray(labels).reshape(-1, 1), table).reshape(labels.shape)


def _column_or(codes: np.ndarray) -> np.ndarray:
    """(X, Y, Z) uint8 → (X, Y) bitwise OR over Z (eight voxels per 64-bit word when Z allows)."""
    if codes.shape[2] % 8 or not codes.shape[2] or not codes.flags.c_contiguous:
        return np.bitwise_or.reduce(codes, axis=2)
    words = codes.view(np.uint64)
    folded = words[..., 0].copy()
    for i in range(1, words.shape[2]):  # a loop over Z/8 words: numpy's reduce is 10x slower here
        folded |= words[..., i]
    for shift in (32, 16, 8):
        folded |= folded >> np.uint64(shift)
    return (folded & np.uint64(255)).astype(np.uint8)


def surface(mask: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` with at least one 6-neighbour outside it (the grid's border counts as
    outside): what a viewer can see of the occupied volume."""
    inner = np.zeros_like(mask)
    core = mask[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for start in (0, 2):
            index = [slice(1, -1)] * 3
            index[axis] = slice(start, start + mask.shape[axis] - 2)
            core &= mask[tuple(index)]
    inner[1:-1, 1:-1, 1:-1] = core
    return mask & ~inner


def occupied_indices(labels: np.ndarray, keep: np.ndarray | None = None,
                     surface_only: bool = False) -> np.ndarray:
    """Flat (C-order) indices of the voxels whose class is in ``keep`` (default: any non-empty
    class, IGNORE_LABEL excluded); ``surface_only``: only those with a free 6-neighbour."""
    mask = (labels != 0) & (labels != IGNORE_LABEL)
    if keep is not None:
        mask &= class_mask(labels, keep)
    if surface_only:
        mask = surface(mask)
    return np.flatnonzero(mask)


def voxel_centres(indices: np.ndarray, shape: tuple, voxel_size: float, origin,
                  out: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) float32 centres in metres (grid frame) of the voxels at flat C-order ``indices`` of a
    grid of ``shape``: ``(index + 0.5) * voxel_size + origin`` per axis, computed in float32;
    written into ``out`` ((N, 3) float32, any strides) when given."""
    size, origin = np.float32(voxel_size), np.asarray(origin, np.float32)
    centres = np.empty((len(indices), 3), np.float32) if out is None else out
    rest = indices
    for axis in (2, 1, 0):
        axis_centres = (np.arange(shape[axis], dtype=np.float32) + np.float32(0.5)) * size + origin[axis]
        if axis:
            rest, index = np.divmod(rest, shape[axis])
        else:
            index = rest
        np.take(axis_centres, index, out=centres[:, axis])
    return centres


def occupied_voxels(labels: np.ndarray, voxel_size: float, origin, keep: np.ndarray | None = None,
                    surface_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 3) float32 in metres (grid frame) and classes (N,) uint8 of the voxels whose
    class is in ``keep`` (default: any non-empty class, IGNORE_LABEL excluded), in C order.

    ``surface_only`` keeps voxels with at least one free 6-neighbour (what a viewer can see).
    """
    indices = occupied_indices(labels, keep, surface_only)
    return voxel_centres(indices, labels.shape, voxel_size, origin), labels.ravel()[indices]


def packed_rgb(class_names: Sequence[str]) -> np.ndarray:
    """(C,) float32 whose bits are 0x00RRGGBB: the ``rgb`` field of PCL/RViz point clouds."""
    colors = class_colors(class_names).astype(np.uint32)
    return ((colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]).view(np.float32)


def bird_eye_occupancy(labels: np.ndarray, fov_mask: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """(Y, X) int8 map, row = y index, column = x index (``nav_msgs/OccupancyGrid`` order):

    100 where a column holds an obstacle (any non-ground class), 0 where it holds ground and no
    obstacle, -1 where it holds neither or the camera does not see it.
    """
    table = np.full(256, OBSTACLE_BIT, np.uint8)
    table[[0, IGNORE_LABEL]] = 0
    table[[class_names.index(n) for n in GROUND_CLASSES if n in class_names]] = GROUND_BIT
    columns = _column_or(_lookup(labels, table))
    seen = _column_or(fov_mask.view(np.uint8)) != 0
    grid = np.full(labels.shape[:2], UNKNOWN, np.int8)
    grid[(columns & GROUND_BIT != 0) & seen] = FREE
    grid[(columns & OBSTACLE_BIT != 0) & seen] = OCCUPIED
    return grid.T.copy()
