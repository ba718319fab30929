"""Camera and voxel geometry (pure numpy), computed exactly as the authors' datasets do."""
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoxelProjection:
    """Where each voxel centre of a grid lands in the image.

    projected_pix: (N, 2) int64 pixel (u, v); fov_mask: (N,) bool, inside the image and in
    front of the camera; pix_z: (N,) float64 camera-frame depth. N voxels in C-order (x, y, z).
    """
    projected_pix: np.ndarray
    fov_mask: np.ndarray
    pix_z: np.ndarray


def grid_shape(scene_size: Sequence[float], voxel_size: float) -> tuple[int, int, int]:
    """Number of voxels per axis: ceil(scene_size / voxel_size)."""
    return tuple(int(n) for n in np.ceil(np.asarray(scene_size, np.float64) / voxel_size))


def voxel_centers(voxel_origin: Sequence[float], voxel_size: float,
                  shape: Sequence[int]) -> np.ndarray:
    """(N, 3) float32 centres ``origin + size * (i + 0.5)`` of a C-order (x, y, z) grid."""
    origin = np.asarray(voxel_origin, np.float64).astype(np.float32).astype(np.float64)
    idx = np.indices(shape, dtype=np.float64).reshape(3, -1).T
    return (origin + voxel_size * idx + voxel_size * 0.5).astype(np.float32)


def vox2pix(cam_from_grid: np.ndarray, cam_K: np.ndarray, voxel_origin: Sequence[float],
            voxel_size: float, image_size: Sequence[int],
            scene_size: Sequence[float]) -> VoxelProjection:
    """Project voxel centres into the image.

    Args:
        cam_from_grid: (4, 4) grid frame → camera frame (KITTI: velodyne → cam, ``Tr``).
        cam_K: (3, 3) intrinsics. voxel_origin: (3,) metres. voxel_size: metres.
        image_size: (W, H). scene_size: (3,) metres.
    """
    shape = grid_shape(scene_size, voxel_size)
    pts = voxel_centers(voxel_origin, voxel_size, shape)
    cam = np.asarray(cam_from_grid, np.float64) @ np.vstack([pts.T, np.ones((1, len(pts)), np.float32)])
    x, y, z = cam[0], cam[1], cam[2]
    k = np.asarray(cam_K).astype(np.float32).astype(np.float64)
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        u = np.round(x * k[0, 0] / z + k[0, 2])
        v = np.round(y * k[1, 1] / z + k[1, 2])
        finite = np.isfinite(u) & np.isfinite(v) & (np.abs(u) < 2**62) & (np.abs(v) < 2**62)
        pix = np.stack([np.where(finite, u, -1), np.where(finite, v, -1)], 1).astype(np.int64)
    width, height = image_size
    fov = ((pix[:, 0] >= 0) & (pix[:, 0] < width) & (pix[:, 1] >= 0) & (pix[:, 1] < height)
           & (z > 0) & finite)
    return VoxelProjection(pix, fov, z)


def local_frustums(projected_pix: np.ndarray, pix_z: np.ndarray, target: np.ndarray,
                   image_size: Sequence[int], num_classes: int, size: int = 4,
                   ignore_index: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Split the image into size×size cells; the voxels seen through each, with their classes.

    Args:
        projected_pix (N, 2), pix_z (N,): the projection of the target grid's voxels.
        target: (X, Y, Z) labels, N = X*Y*Z. image_size: (W, H).
    Returns:
        masks (size², X, Y, Z) bool, cell-major (row band, then column band), non-ignored voxels
        in front of the camera; class_dists (size², num_classes) float32 voxel counts.
    """
    width, height = image_size
    u, v = projected_pix[:, 0], projected_pix[:, 1]
    labelled = (target != ignore_index).reshape(-1) & (pix_z > 0)
    flat_target = target.reshape(-1).astype(np.int64)
    masks = np.zeros((size * size, flat_target.size), bool)
    dists = np.zeros((size * size, num_classes), np.float32)
    for row in range(size):
        for col in range(size):
            f = row * size + col
            masks[f] = (labelled & (u >= col / size * width) & (u < (col + 1) / size * width)
                        & (v >= row / size * height) & (v < (row + 1) / size * height))
            dists[f] = np.bincount(flat_target[masks[f]], minlength=num_classes)[:num_classes]
    return masks.reshape(size * size, *target.shape), dists
