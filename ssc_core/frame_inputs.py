"""A camera frame → the network's inputs: one rule for the predictor, the datasets and the exporter.

Pure numpy (no torch, no backends), so data loaders and the inference API build frames the
same way without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .geometry import VoxelProjection, check_rotation, vox2pix

if TYPE_CHECKING:
    from .presets import Preset

NETWORK_INPUTS = ('img', 'depth', 'cam_K', 'cam_pose', 'voxel_origin', 'projected_pix', 'fov_mask')
# The authors' input names: 'cam_pose' is cam_from_grid (grid frame -> camera frame, KITTI's Tr).
"""The keyword inputs of ``Symphonies.forward``, in its order (also the ONNX input names)."""

IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), np.float32)
IMAGENET_STD = np.array((0.229, 0.224, 0.225), np.float32)

MILLIMETRE_MEDIAN_DEPTH = 250.0
"""A median depth (m) above this looks like millimetres given as metres (no grid is that deep)."""

MIN_IMAGE_SIDE = 32
"""Images with a side shorter than this (pixels) are refused: too little to see a scene in."""

FOCAL_RANGE = (0.01, 100.0)
"""Plausible focal lengths, in units of the image's longer side (fields of view ~176° to ~0.6°)."""

VIEW_LATTICE = 64
"""A camera must see one point of a lattice this fine along the grid's longest side."""


def check_matrix(value, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape``; ValueError naming ``name`` otherwise."""
    m = np.asarray(value, dtype=np.float64)
    if m.shape != shape:
        raise ValueError(f'{name}: expected shape {shape}, got {m.shape}')
    if not np.all(np.isfinite(m)):
        raise ValueError(f'{name}: contains NaN or inf: {m.tolist()}')
    return m


def check_calibration(K, cam_from_grid) -> tuple[np.ndarray, np.ndarray]:
    """Validated (3, 3) intrinsics and (4, 4) grid → camera pose, float64: positive focal
    lengths; a rigid pose (:func:`~ssc_core.geometry.check_rotation`, last row (0, 0, 0, 1))."""
    K = check_matrix(K, (3, 3), 'K')
    pose = check_matrix(cam_from_grid, (4, 4), 'cam_from_grid')
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f'K: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}')
    if not np.allclose(pose[3], (0, 0, 0, 1)):
        raise ValueError(f'cam_from_grid: last row must be (0, 0, 0, 1), got {pose[3].tolist()}')
    check_rotation(pose, 'cam_from_grid: ')
    return K, pose


def check_image_size(image_size: tuple[int, int]) -> None:
    """ValueError for an (h, w) image too small to use."""
    h, w = image_size
    if min(h, w) < MIN_IMAGE_SIDE:
        raise ValueError(f'image: {w}x{h} is too small (each side must be >= {MIN_IMAGE_SIDE} pixels)')


def check_intrinsics(K: np.ndarray, image_size: tuple[int, int]) -> None:
    """ValueError naming what is implausible about pinhole intrinsics K (3, 3) for an (h, w) image:
    last row not (0, 0, 1), focal lengths outside :data:`FOCAL_RANGE`, pixels far from square,
    principal point more than an image away from the image."""
    h, w = image_size
    if not np.array_equal(K[2], (0, 0, 1)):
        raise ValueError(f'K: last row must be (0, 0, 1), got {K[2].tolist()}')
    low, high = (f * max(h, w) for f in FOCAL_RANGE)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (low <= fx <= high and low <= fy <= high):
        raise ValueError(f'K: focal lengths fx={fx:g}, fy={fy:g} are implausible for a {w}x{h} image '
                         f'(expected {low:g} to {high:g} pixels)')
    if not 0.25 <= fx / fy <= 4:
        raise ValueError(f'K: fx/fy = {fx / fy:g} (fx={fx:g}, fy={fy:g}): pixels far from square')
    if not (-w <= cx <= 2 * w and -h <= cy <= 2 * h):
        raise ValueError(f'K: principal point ({cx:g}, {cy:g}) is far outside the {w}x{h} image')


def check_grid_in_view(K: np.ndarray, cam_from_grid: np.ndarray, voxel_origin, scene_size,
                       image_size: tuple[int, int]) -> None:
    """ValueError when an (h, w) camera sees none of a grid of ``scene_size`` metres at
    ``voxel_origin`` (tested on a :data:`VIEW_LATTICE` lattice: cheap for any grid size)."""
    h, w = image_size
    spacing = max(scene_size) / VIEW_LATTICE
    seen = vox2pix(cam_from_grid, K, voxel_origin, spacing, (w, h), scene_size)
    if not seen.fov_mask.any():
        origin = ', '.join(f'{v:g}' for v in voxel_origin)
        raise ValueError(f'voxel_origin ({origin}): the camera sees none of the '
                         f'{" x ".join(f"{s:g}" for s in scene_size)} m grid from there')


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


FIT_POLICIES = ('auto', 'crop', 'scale')
"""How a camera image becomes the network's input (see :func:`plan_fit`)."""

KITTI_SIZED = 0.03
"""``auto`` crops like the authors when the image exceeds the network size by at most this
fraction per side (KITTI's 1241x376, 1242x375, 1226x370 for 1220x370), and scales otherwise."""

SMALL_VIEW = 0.2
"""A view is small below this fraction of the output grid (the rest of the output is guessed)..."""
KEPT_VIEW = 0.9
"""... or when the network's input keeps less than this share of what the whole camera sees."""


@dataclass(frozen=True)
class ImageFit:
    """Crop ``box`` (x0, y0, x1, y1) of the camera image, resize it to ``size`` (h, w) and pad
    at the bottom/right to the network's size; ``K`` (3, 3) the intrinsics of that input."""
    policy: str
    box: tuple[int, int, int, int]
    size: tuple[int, int]
    K: np.ndarray


@dataclass(frozen=True)
class ViewReport:
    """How much of the output grid one calibration lets the network see.

    fraction_in_view: output voxels that project into the network's input image;
    camera_fraction: those the whole camera image sees (the best any fitting can do).
    """
    image_size: tuple[int, int]
    policy: str
    fraction_in_view: float
    camera_fraction: float

    @property
    def small(self) -> bool:
        return (self.fraction_in_view < SMALL_VIEW
                or self.fraction_in_view < KEPT_VIEW * self.camera_fraction)

    def describe(self) -> str:
        h, w = self.image_size
        return (f'camera {w}x{h}, fit {self.policy}: {100 * self.fraction_in_view:.1f} % of the '
                f'output grid in view (the whole camera image sees {100 * self.camera_fraction:.1f} %)')


def plan_fit(image_size: tuple[int, int], K: np.ndarray, cam_from_grid: np.ndarray, preset: Preset,
             policy: str = 'auto') -> ImageFit:
    """Where the network's input comes from in an (h, w) camera image, by ``policy``:

    ``crop``: the authors' rule, the top-left network-sized corner (padded when smaller), K as is.
    ``scale``: the part of the image the output grid projects into, grown to the network's
    aspect ratio within the image, scaled uniformly to fit (K scaled and shifted with it).
    ``auto``: ``crop`` for images at most :data:`KITTI_SIZED` larger than the network, else ``scale``.
    """
    if policy not in FIT_POLICIES:
        raise ValueError(f'fit policy: expected one of {", ".join(FIT_POLICIES)}, got {policy!r}')
    h, w = image_size
    H, W = preset.image_shape
    if policy == 'auto':
        kitti_sized = H <= h <= H * (1 + KITTI_SIZED) and W <= w <= W * (1 + KITTI_SIZED)
        policy = 'crop' if kitti_sized else 'scale'
    if policy == 'crop':
        return ImageFit('crop', (0, 0, min(w, W), min(h, H)), (min(h, H), min(w, W)),
                        np.asarray(K, np.float64))
    x0, y0, x1, y1 = grid_box(image_size, K, cam_from_grid, preset)
    scale = min(H / (y1 - y0), W / (x1 - x0))
    x0, x1 = _grow(x0, x1, W / scale, w)
    y0, y1 = _grow(y0, y1, H / scale, h)
    size = (min(H, round((y1 - y0) * scale)), min(W, round((x1 - x0) * scale)))
    sx, sy = size[1] / (x1 - x0), size[0] / (y1 - y0)
    fitted = np.array(K, np.float64)
    fitted[0] = sx * fitted[0] + (sx * (0.5 - x0) - 0.5) * fitted[2]  # pixel centres stay centres
    fitted[1] = sy * fitted[1] + (sy * (0.5 - y0) - 0.5) * fitted[2]
    return ImageFit('scale', (x0, y0, x1, y1), size, fitted)


def grid_box(image_size: tuple[int, int], K: np.ndarray, cam_from_grid: np.ndarray,
             preset: Preset) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the pixels of an (h, w) image that the output grid projects into
    (the whole image when none does)."""
    h, w = image_size
    cfg = preset.model
    seen = vox2pix(cam_from_grid, K, preset.voxel_origin, cfg.voxel_size, (w, h), preset.scene_size)
    pix = seen.projected_pix[seen.fov_mask]
    if not len(pix):
        return 0, 0, w, h
    (u0, v0), (u1, v1) = pix.min(0), pix.max(0)
    return int(u0), int(v0), int(u1) + 1, int(v1) + 1


def _grow(lo: int, hi: int, length: float, limit: int) -> tuple[int, int]:
    """[lo, hi) grown about its centre to ``length`` pixels (at least its own), kept in [0, limit)."""
    length = min(max(int(np.ceil(length - 1e-9)), hi - lo), limit)
    start = int(np.floor((lo + hi - length) / 2))
    start = min(max(start, 0), limit - length)
    return start, start + length


def view_report(fit: ImageFit, output: VoxelProjection, image_size: tuple[int, int], K: np.ndarray,
                cam_from_grid: np.ndarray, preset: Preset) -> ViewReport:
    """The fraction of the output grid in view through ``fit`` (its image part, padding aside;
    ``output``: the output grid's projection at ``fit.K``, see :func:`project_grids`) and through
    the whole (h, w) camera image with intrinsics K."""
    cfg = preset.model
    height, width = fit.size
    u, v = output.projected_pix[:, 0], output.projected_pix[:, 1]
    fitted = output.fov_mask & (u < width) & (v < height)
    camera = vox2pix(cam_from_grid, K, preset.voxel_origin, cfg.voxel_size, image_size[::-1],
                     preset.scene_size)
    return ViewReport(tuple(image_size), fit.policy, float(fitted.mean()), float(camera.fov_mask.mean()))


def apply_fit(image: np.ndarray, depth: np.ndarray, fit: ImageFit,
              shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Crop, resize and pad a frame as ``fit`` says, to ``shape`` (H, W).

    Resizing: area averaging (shrinking) or bilinear (growing) for the image, nearest pixel for
    depth (no blending across holes). Padding is the mean colour (0 after normalization) and
    "no depth" (NaN). image (3, h, w) normalized, depth (h, w) → (3, H, W), (H, W).
    """
    height, width = shape
    x0, y0, x1, y1 = fit.box
    image, depth = image[:, y0:y1, x0:x1], depth[y0:y1, x0:x1]
    if fit.size != depth.shape:
        size = (fit.size[1], fit.size[0])
        shrink = fit.size[0] < depth.shape[0]
        image = cv2.resize(np.ascontiguousarray(image.transpose(1, 2, 0)), size,
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        image = image.transpose(2, 0, 1)
        depth = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST_EXACT)
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


def frame_inputs(image, depth, fit: ImageFit, cam_from_grid, preset: Preset,
                 projection: VoxelProjection) -> dict[str, np.ndarray]:
    """One frame → the network's inputs (no batch axis), keyed by :data:`NETWORK_INPUTS`.

    Args:
        image: (H, W, 3) RGB uint8 or float in [0, 1]; depth: (H, W) metres, registered.
        fit: from :func:`plan_fit` for this image size and calibration; cam_from_grid: (4, 4).
        projection: the network grid's projection at the fitted intrinsics
            (``project_grids(preset, fit.K, cam_from_grid)[0]``).
    Returns:
        img (3, h, w) float32, depth (h, w) float32 at the preset's image size (h, w); cam_K,
        cam_pose, voxel_origin float32; projected_pix (Np, 2) int64; fov_mask (Np,) bool.
    """
    image = normalize_image(image)
    depth = check_depth(depth, image.shape[1:])
    image, depth = apply_fit(image, depth, fit, preset.image_shape)
    return {
        'img': image,
        'depth': depth,
        'cam_K': np.asarray(fit.K, np.float32),
        'cam_pose': np.asarray(cam_from_grid, np.float32),
        'voxel_origin': np.asarray(preset.voxel_origin, np.float32),
        'projected_pix': projection.projected_pix,
        'fov_mask': projection.fov_mask,
    }
