"""One inference API: camera image + depth + calibration in, semantic voxel grid out."""
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from .backends import BACKENDS, TorchBackend
from .backends.torch_backend import PRECISIONS
from .checkpoint import CheckpointError, load_model
from .geometry import VoxelProjection, vox2pix
from .model import Symphonies
from .presets import Preset, get_preset

IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), np.float32)
IMAGENET_STD = np.array((0.229, 0.224, 0.225), np.float32)
__all__ = ['PRECISIONS', 'Prediction', 'Predictor']


@dataclass
class Prediction:
    """labels (X, Y, Z) uint8 class per voxel; probs (C, X, Y, Z) float32 when asked for;
    fov_mask (X, Y, Z) bool, voxels the camera sees."""
    labels: np.ndarray
    fov_mask: np.ndarray
    probs: np.ndarray | None = None


@dataclass(frozen=True)
class CameraGeometry:
    """Per-calibration constants: the network's projection input and the output-grid FOV."""
    network: VoxelProjection
    output_fov: np.ndarray


def project_grids(preset: Preset, K: np.ndarray, cam_from_grid: np.ndarray):
    """Voxel → pixel projections of the preset's decoder grid (the network's input) and of its
    output grid, for one calibration → (network, output) :class:`VoxelProjection`."""
    cfg = preset.model
    height, width = cfg.image_shape
    args = (cam_from_grid, K, preset.voxel_origin)
    network = vox2pix(*args, cfg.voxel_size * cfg.volume_scale, (width, height), preset.scene_size)
    output = vox2pix(*args, cfg.voxel_size, (width, height), preset.scene_size)
    return network, output


def _matrix(value, shape, name) -> np.ndarray:
    m = np.asarray(value, dtype=np.float64)
    if m.shape != shape:
        raise ValueError(f'{name}: expected shape {shape}, got {m.shape}')
    if not np.all(np.isfinite(m)):
        raise ValueError(f'{name}: contains NaN or inf: {m.tolist()}')
    return m


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
    return image, depth


class Predictor:
    """Runs Symphonies on camera frames, on a backend (PyTorch or ONNX Runtime).

    Camera geometry (voxel → pixel projection, field-of-view masks) is computed from ``K`` and
    the grid pose exactly as the authors' datasets do, and cached per calibration.

    Args:
        network: a :class:`Symphonies` module (run with PyTorch on ``device`` at ``precision``,
            see :class:`~ssc_core.backends.TorchBackend`) or a backend from :mod:`ssc_core.backends`.
        preset: the network's dataset settings.
    """

    def __init__(self, network, preset: Preset, device='cpu', precision: str = 'fp32'):
        self.backend = (TorchBackend(network, device, precision) if isinstance(network, Symphonies)
                        else network)
        self.device = self.backend.device
        self.preset = preset
        self._geometry: OrderedDict[bytes, CameraGeometry] = OrderedDict()

    @classmethod
    def from_checkpoint(cls, path, preset: Preset | str | None = None, device='cpu',
                        precision: str = 'fp32', backend: str = 'torch',
                        allow_fallback: bool = False) -> 'Predictor':
        """Build from a checkpoint (torch, torch_compile) or an exported ``.onnx`` file
        (onnxruntime)."""
        if isinstance(preset, str):
            preset = get_preset(preset)
        if backend in ('torch', 'torch_compile'):
            model, preset = load_model(path, preset, device)
            return cls(TorchBackend(model, device, precision, compile=backend == 'torch_compile'), preset)
        if backend == 'onnxruntime':
            from .backends.onnxruntime_backend import OnnxRuntimeBackend
            runtime = OnnxRuntimeBackend(path, device, precision, allow_fallback)
            if preset is not None and runtime.preset.differences(preset):
                raise CheckpointError(f'{path}: exported for preset {runtime.preset.name!r} '
                                      f'(image {runtime.preset.image_shape}), not {preset.name!r} '
                                      f'(image {preset.image_shape})')
            return cls(runtime, runtime.preset)
        raise ValueError(f'backend: expected one of {", ".join(BACKENDS)}, got {backend!r}')

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.preset.class_names

    def geometry(self, K, cam_from_grid) -> CameraGeometry:
        """Projection of the network grid and output-grid FOV for one calibration (cached)."""
        K = _matrix(K, (3, 3), 'K')
        pose = _matrix(cam_from_grid, (4, 4), 'T_cam_from_grid')
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f'K: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}')
        if not np.allclose(pose[3], (0, 0, 0, 1)):
            raise ValueError(f'T_cam_from_grid: last row must be (0, 0, 0, 1), got {pose[3].tolist()}')
        key = K.tobytes() + pose.tobytes()
        if key in self._geometry:
            self._geometry.move_to_end(key)
            return self._geometry[key]
        network, output = project_grids(self.preset, K, pose)
        geometry = CameraGeometry(network, output.fov_mask.reshape(self.preset.model.scene_shape))
        self._geometry[key] = geometry
        while len(self._geometry) > 8:
            self._geometry.popitem(last=False)
        return geometry

    def prepare(self, images, depths, Ks, poses) -> dict[str, torch.Tensor]:
        """Lists of frames → the network's keyword inputs, batched on the device."""
        if not (len(images) == len(depths) == len(Ks) == len(poses)) or not images:
            raise ValueError('images, depths, Ks and poses must be non-empty lists of equal length')
        batch = {k: [] for k in ('img', 'depth', 'cam_K', 'cam_pose', 'voxel_origin',
                                 'projected_pix', 'fov_mask')}
        for image, depth, K, pose in zip(images, depths, Ks, poses, strict=True):
            image = normalize_image(image)
            depth = np.asarray(depth)
            if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
                raise ValueError(f'depth: expected (H, W) numbers in metres, got shape '
                                 f'{depth.shape} {depth.dtype}')
            if depth.shape != image.shape[1:]:
                raise ValueError(f'depth: size {depth.shape} differs from image size '
                                 f'{image.shape[1:]} (depth must be registered to the image)')
            image, depth = fit_to_shape(image, depth.astype(np.float32), self.preset.image_shape)
            geometry = self.geometry(K, pose).network
            batch['img'].append(image)
            batch['depth'].append(depth)
            batch['cam_K'].append(np.asarray(K, np.float32))
            batch['cam_pose'].append(np.asarray(pose, np.float32))
            batch['voxel_origin'].append(np.asarray(self.preset.voxel_origin, np.float32))
            batch['projected_pix'].append(geometry.projected_pix)
            batch['fov_mask'].append(geometry.fov_mask)
        return {k: torch.from_numpy(np.stack(v)).to(self.device) for k, v in batch.items()}

    def logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Network inputs (see :meth:`prepare`) → logits (B, C, X, Y, Z) float32."""
        return self.backend.run(inputs, want_logits=True)[1]

    def labels(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        """Network inputs → labels (B, X, Y, Z) uint8 (no logits leave the backend)."""
        return self.backend.run(inputs, want_logits=False)[0]

    def predict(self, image, depth, K, cam_from_grid, return_probs: bool = False) -> Prediction:
        """One frame.

        Args:
            image: (H, W, 3) RGB uint8 or float [0, 1]. depth: (H, W) metres registered to the
                image; NaN, inf and values ≤ 0 mean no depth. K: (3, 3) intrinsics.
            cam_from_grid: (4, 4) pose of the voxel grid in the camera frame (KITTI: velo → cam).
        """
        return self.predict_batch([image], [depth], [K], [cam_from_grid], return_probs)[0]

    def predict_batch(self, images, depths, Ks, poses, return_probs: bool = False) -> list[Prediction]:
        """Several frames; each gives its single-frame result (ONNX models run them one by one)."""
        inputs = self.prepare(images, depths, Ks, poses)
        if self.backend.name == 'onnxruntime' and len(images) > 1:
            runs = [self.backend.run({k: v[i:i + 1] for k, v in inputs.items()}, return_probs)
                    for i in range(len(images))]
            labels = np.concatenate([r[0] for r in runs])
            logits = torch.cat([r[1] for r in runs]) if return_probs else None
        else:
            labels, logits = self.backend.run(inputs, want_logits=return_probs)
        probs = logits.softmax(1).cpu().numpy() if return_probs else [None] * len(labels)
        return [Prediction(labels[i], self.geometry(Ks[i], poses[i]).output_fov, probs[i])
                for i in range(len(labels))]
