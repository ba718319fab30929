"""From a predicted label grid to what robots consume: voxel centres, colours, a 2-D occupancy map.

Pure numpy; the ROS node only packs these arrays into messages.
"""
from collections.abc import Sequence

import numpy as np

from .labels import IGNORE_LABEL, class_colors

GROUND_CLASSES = frozenset({'road', 'parking', 'sidewalk', 'other-ground', 'terrain'})
OCCUPIED, FREE, UNKNOWN = 100, 0, -1


def class_ids(class_names: Sequence[str], wanted: Sequence[str] | None) -> np.ndarray:
    """Ids of the named classes (all non-empty classes when ``wanted`` is empty/None)."""
    if not wanted:
        return np.arange(1, len(class_names))
    unknown = [n for n in wanted if n not in class_names]
    if unknown:
        raise ValueError(f'unknown classes {unknown}; known: {", ".join(class_names[1:])}')
    return np.array(sorted(class_names.index(n) for n in wanted))


def occupied_voxels(labels: np.ndarray, voxel_size: float, origin, keep: np.ndarray | None = None,
                    surface_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 3) float32 in metres (grid frame) and classes (N,) uint8 of the voxels whose
    class is in ``keep`` (default: any non-empty class, IGNORE_LABEL excluded).

    ``surface_only`` keeps voxels with at least one free 6-neighbour (what a viewer can see).
    """
    mask = (labels != 0) & (labels != IGNORE_LABEL)
    if keep is not None:
        mask &= np.isin(labels, keep)
    if surface_only:
        padded = np.pad(mask, 1)
        inner = np.ones_like(mask)
        for axis in range(3):
            for shift in (-1, 1):
                inner &= np.roll(padded, shift, axis)[1:-1, 1:-1, 1:-1]
        mask &= ~inner
    idx = np.nonzero(mask)
    centres = (np.stack(idx, 1).astype(np.float32) + 0.5) * np.float32(voxel_size)
    return centres + np.asarray(origin, np.float32), labels[idx]


def packed_rgb(class_names: Sequence[str]) -> np.ndarray:
    """(C,) float32 whose bits are 0x00RRGGBB: the ``rgb`` field of PCL/RViz point clouds."""
    colors = class_colors(class_names).astype(np.uint32)
    return ((colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]).view(np.float32)


def bird_eye_occupancy(labels: np.ndarray, fov_mask: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """(Y, X) int8 map, row = y index, column = x index (``nav_msgs/OccupancyGrid`` order):

    100 where a column holds an obstacle (any non-ground class), 0 where it holds ground and no
    obstacle, -1 where it holds neither or the camera does not see it.
    """
    ground = np.isin(labels, [class_names.index(n) for n in GROUND_CLASSES if n in class_names])
    obstacle = (labels != 0) & (labels != IGNORE_LABEL) & ~ground
    seen = fov_mask.any(2)
    grid = np.full(labels.shape[:2], UNKNOWN, np.int8)
    grid[ground.any(2) & seen] = FREE
    grid[obstacle.any(2) & seen] = OCCUPIED
    return grid.T.copy()
