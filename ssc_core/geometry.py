"""Camera and voxel geometry (pure numpy), computed exactly as the authors' datasets do."""
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .labels import IGNORE_LABEL

ROTATION_TOLERANCE = 1e-3
"""How far the 3x3 part R of a pose may be from a rotation: largest entry of RᵀR − I."""


def check_rotation(pose: np.ndarray, prefix: str = '') -> None:
    """ValueError (its text after ``prefix``) unless the 3x3 part of a (4, 4) pose is a
    rotation: RᵀR within :data:`ROTATION_TOLERANCE` of the identity, determinant positive."""
    rotation = pose[:3, :3]
    with np.errstate(all='ignore'):
        error = np.abs(rotation.T @ rotation - np.eye(3)).max()
        det = np.linalg.det(rotation) + 0.0
    if not (error <= ROTATION_TOLERANCE and det > 0):
        raise ValueError(f'{prefix}its 3x3 part is not a rotation (RᵀR − I up to {error:g}, '
                         f'det {det:g}; a pose is rigid, in metres)')


def check_rigid(pose, where: str) -> np.ndarray:
    """``pose`` (4, 4) as float64 if it is a finite rigid transform; ValueError naming ``where``."""
    pose = np.asarray(pose, np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f'{where}: expected a 4x4 pose, got shape {pose.shape}')
    if not np.all(np.isfinite(pose)):
        raise ValueError(f'{where}: pose is not finite: {pose[:3].ravel().tolist()}')
    if not np.allclose(pose[3], (0, 0, 0, 1)):
        raise ValueError(f'{where}: last row must be 0 0 0 1, got {pose[3].tolist()}')
    check_rotation(pose, f'{where}: ')
    return pose



def pose_from_quaternion(translation: Sequence[float], quaternion: Sequence[float]) -> np.ndarray:
    """(4, 4) float64 pose from a translation (3,) and a quaternion (x, y, z, w), ROS's order
    (``geometry_msgs/Transform``), normalised; ValueError for a zero or non-finite quaternion."""
    x, y, z, w = q = np.asarray(quaternion, np.float64)
    norm = float(np.sqrt(q @ q))
    if not (np.isfinite(norm) and norm > 1e-9) or not np.all(np.isfinite(translation)):
        raise ValueError(f'not a rigid transform: translation {list(translation)}, quaternion {q.tolist()}')
    x, y, z, w = q / norm
    pose = np.eye(4)
    pose[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    pose[:3, 3] = translation
    return pose


def quaternion_from_pose(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A rigid (4, 4) pose → translation (3,) and unit quaternion (x, y, z, w) with w >= 0
    (:func:`pose_from_quaternion` inverts it)."""
    r = np.asarray(pose, np.float64)[:3, :3]
    trace = np.trace(r)
    if trace > 0:   # the largest of w, x, y, z divides (Shepperd): no cancellation
        s = 2 * np.sqrt(1 + trace)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * np.sqrt(1 + r[i, i] - r[j, j] - r[k, k])
        q = [0.0] * 4
        q[i], q[j], q[k] = s / 4, (r[j, i] + r[i, j]) / s, (r[k, i] + r[i, k]) / s
        q[3] = (r[k, j] - r[j, k]) / s
    q = np.asarray(q) / np.linalg.norm(q)
    return np.asarray(pose, np.float64)[:3, 3].copy(), q if q[3] >= 0 else -q


def transform_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) points → ``R p + t`` (N, 3) float32, for a (4, 4) pose (computed in float64)."""
    pose = np.asarray(pose, np.float64)
    return (np.asarray(points, np.float64) @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32)


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


def frustum_cells(projected_pix: np.ndarray, pix_z: np.ndarray, image_size: Sequence[int],
                  size: int) -> np.ndarray:
    """Which image cell of a size×size split each voxel is seen through.

    projected_pix (N, 2), pix_z (N,) → (N,) int16 cell id ``row_band * size + column_band``,
    -1 for voxels outside the image or behind the camera (the authors' bounds, exactly).
    """
    width, height = image_size
    u, v = projected_pix[:, 0], projected_pix[:, 1]
    bands = [(i * 1.0 / size, (i * 1.0 + 1) / size) for i in range(size)]
    col = np.full(len(u), -1, np.int16)
    row = np.full(len(v), -1, np.int16)
    for i, (lo, hi) in enumerate(bands):
        col[(u >= lo * width) & (u < hi * width)] = i
        row[(v >= lo * height) & (v < hi * height)] = i
    return np.where((col >= 0) & (row >= 0) & (pix_z > 0), row * size + col, -1).astype(np.int16)


def local_frustums(cells: np.ndarray, target: np.ndarray, num_classes: int, size: int,
                   ignore_index: int = IGNORE_LABEL) -> tuple[np.ndarray, np.ndarray]:
    """Local frustums of a target for the frustum-proportion loss.

    Args:
        cells: (N,) from :func:`frustum_cells` for the target grid; target (X, Y, Z) labels.
    Returns:
        frustum_ids (X, Y, Z) int16, the frustum of each labelled voxel or -1;
        class_dists (size², num_classes) float32 voxel counts per frustum.
    """
    flat = target.reshape(-1).astype(np.int64)
    ids = np.where(flat != ignore_index, cells, -1).astype(np.int16)
    seen = ids >= 0
    dists = np.bincount(ids[seen].astype(np.int64) * num_classes + flat[seen],
                        minlength=size * size * num_classes)
    return ids.reshape(target.shape), dists.reshape(size * size, num_classes).astype(np.float32)
