"""A camera frame → the network's inputs: one rule for the predictor, the datasets and the exporter.

Pure numpy (no torch, no backends), so data loaders and the inference API build frames the
same way without importing each other.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .geometry import VoxelProjection, vox2pix

if TYPE_CHECKING:
    from .presets import Preset

NETWORK_INPUTS = ('img', 'depth', 'cam_K', 'cam_pose', 'voxel_origin', 'projected_pix', 'fov_mask')
"""The keyword inputs of ``Symphonies.forward``, in its order (also the ONNX input names)."""

IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), np.float32)
IMAGENET_STD = np.array((0.229, 0.224, 0.225), np.float32)

MILLIMETRE_MEDIAN_DEPTH = 250.0
"""A median depth (m) above this looks like millimetres given as metres (no grid is that deep)."""


def check_matrix(value, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape``; ValueError naming ``name`` otherwise."""
    m = np.asarray(value, dtype=np.float64)
    if m.shape != shape:
        raise ValueError(f'{name}: expected shape {shape}, got {m.shape}')
    if not np.all(np.isfinite(m)):
        raise ValueError(f'{name}: contains NaN or inf: {m.tolist()}')
    return m


def check_calibration(K, cam_from_grid) -> tuple[np.ndarray, np.ndarray]:
    """Validated (3, 3) intrinsics and (4, 4) grid → camera pose, float64."""
    K = check_matrix(K, (3, 3), 'K')
    pose = check_matrix(cam_from_grid, (4, 4), 'T_cam_from_grid')
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f'K: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}')
    if not np.allclose(pose[3], (0, 0, 0, 1)):
        raise ValueError(f'T_cam_from_grid: last row must be (0, 0, 0, 1), got {pose[3].tolist()}')
    return K, pose


def normalize_image(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB uint8 or float in [0, 1] (or (H, W) grey) → (3, H, W) ImageNet-normalized."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image: expected (H, W, 3) RGB or (H, W) grey, got shape {image.shape}')
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    elif np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
        if not np.all(np.isfinite(image)):
            raise ValueError('image: contains NaN or inf values')
    else:
        raise ValueError(f'image: expected uint8 or float pixels, got {image.dtype}')
    return ((image - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def check_depth(depth, image_size: tuple[int, int]) -> np.ndarray:
    """(H, W) depth in metres registered to an (H, W) image → float32."""
    depth = np.asarray(depth)
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise ValueError(f'depth: expected (H, W) numbers in metres, got shape {depth.shape} {depth.dtype}')
    if depth.shape != tuple(image_size):
        raise ValueError(f'depth: size {depth.shape} differs from image size {tuple(image_size)} '
                         '(depth must be registered to the image)')
    return depth.astype(np.float32)


def depth_warnings(depth: np.ndarray, K: np.ndarray, cam_from_grid: np.ndarray,
                   preset: Preset) -> dict[str, str]:
    """What is wrong with a frame's depth, as the network will see it → {kind: message}.

    ``no_depth_in_grid``: no valid pixel lifts into the decoder grid (the network then runs
    without voxel proposals: the scene comes from the image alone).
    ``depth_in_millimetres``: the median valid depth is above :data:`MILLIMETRE_MEDIAN_DEPTH`.
    depth (h, w) metres at the network's image size; K (3, 3) for that size; cam_from_grid (4, 4).
    """
    warnings = {}
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        warnings['no_depth_in_grid'] = 'depth: no valid pixel (all NaN, inf or <= 0)'
        return warnings
    median = float(np.median(depth[valid]))
    if median > MILLIMETRE_MEDIAN_DEPTH:
        warnings['depth_in_millimetres'] = (
            f'depth: median {median:.0f} m looks like millimetres given as metres '
            '(32FC1 depth must be in metres; 16UC1 is read as millimetres)')
    inside = count_depth_in_grid(depth, valid, K, cam_from_grid, preset)
    if not inside:
        warnings['no_depth_in_grid'] = (
            f'depth: none of the {int(valid.sum())} valid pixels lies inside the voxel grid '
            f'({" x ".join(f"{s:g}" for s in preset.scene_size)} m); the network runs without '
            'depth proposals')
    return warnings


def count_depth_in_grid(depth: np.ndarray, valid: np.ndarray, K: np.ndarray,
                        cam_from_grid: np.ndarray, preset: Preset) -> int:
    """How many valid depth pixels fall into a decoder-grid voxel, as the network's proposals
    count them (coordinates truncated toward zero). depth, valid (h, w); K (3, 3); pose (4, 4)."""
    cfg = preset.model
    v, u = np.nonzero(valid)
    z = depth[v, u].astype(np.float64)
    cam = np.linalg.solve(K, np.stack([u * z, v * z, z]))
    grid_from_cam = np.linalg.inv(cam_from_grid)
    world = grid_from_cam[:3, :3] @ cam + grid_from_cam[:3, 3:]
    voxel = cfg.voxel_size * cfg.volume_scale
    vox = (world.T - np.asarray(preset.voxel_origin)) / voxel - 0.5
    vox[:, 2] /= cfg.downsample_z
    dims = np.array(cfg.scene_shape) // cfg.volume_scale // np.array([1, 1, cfg.downsample_z])
    return int(((vox > -1) & (vox < dims)).all(1).sum())


def fit_to_shape(image: np.ndarray, depth: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """Crop (or pad) at the bottom/right to ``shape`` (H, W), keeping the top-left corner.

    Like the authors' datasets (``img[:H, :W]``), so the intrinsics stay valid unchanged.
    Padding is the mean colour (0 after normalization) and "no depth" (NaN).
    image (3, h, w), depth (h, w) → (3, H, W), (H, W).
    """
    height, width = shape
    image, depth = image[:, :height, :width], depth[:height, :width]
    pad_h, pad_w = height - depth.shape[0], width - depth.shape[1]
    if pad_h or pad_w:
        image = np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)))
        depth = np.pad(depth, ((0, pad_h), (0, pad_w)), constant_values=np.nan)
    return np.ascontiguousarray(image), np.ascontiguousarray(depth)


def project_grids(preset: Preset, K: np.ndarray,
                  cam_from_grid: np.ndarray) -> tuple[VoxelProjection, VoxelProjection]:
    """Voxel → pixel projections of the preset's decoder grid (the network's input) and of its
    output grid, for one calibration → (network, output)."""
    cfg = preset.model
    height, width = cfg.image_shape
    args = (cam_from_grid, K, preset.voxel_origin)
    network = vox2pix(*args, cfg.voxel_size * cfg.volume_scale, (width, height), preset.scene_size)
    output = vox2pix(*args, cfg.voxel_size, (width, height), preset.scene_size)
    return network, output


def frame_inputs(image, depth, K, cam_from_grid, preset: Preset,
                 projection: VoxelProjection) -> dict[str, np.ndarray]:
    """One frame → the network's inputs (no batch axis), keyed by :data:`NETWORK_INPUTS`.

    Args:
        image: (H, W, 3) RGB uint8 or float in [0, 1]; depth: (H, W) metres, registered.
        K: (3, 3); cam_from_grid: (4, 4). projection: the network grid's projection for this
            calibration (``project_grids(preset, K, cam_from_grid)[0]``).
    Returns:
        img (3, h, w) float32, depth (h, w) float32 at the preset's image size (h, w); cam_K,
        cam_pose, voxel_origin float32; projected_pix (Np, 2) int64; fov_mask (Np,) bool.
    """
    image = normalize_image(image)
    depth = check_depth(depth, image.shape[1:])
    image, depth = fit_to_shape(image, depth, preset.image_shape)
    return {
        'img': image,
        'depth': depth,
        'cam_K': np.asarray(K, np.float32),
        'cam_pose': np.asarray(cam_from_grid, np.float32),
        'voxel_origin': np.asarray(preset.voxel_origin, np.float32),
        'projected_pix': projection.projected_pix,
        'fov_mask': projection.fov_mask,
    }
