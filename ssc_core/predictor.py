"""One inference API: camera image + depth + calibration in, semantic voxel grid out."""
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from .backends import BACKENDS, CudaGraphBackend, NonFiniteOutput, TorchBackend
from .backends.torch_backend import PRECISIONS
from .checkpoint import CheckpointError, load_model
from .frame_inputs import (
    FIT_POLICIES,
    NETWORK_INPUTS,
    ImageFit,
    ViewReport,
    check_calibration,
    check_image_size,
    check_intrinsics,
    depth_warnings,
    frame_inputs,
    plan_fit,
    project_grids,
    view_report,
)
from .geometry import VoxelProjection
from .model import Symphonies
from .presets import Preset, get_preset

__all__ = ['PRECISIONS', 'NonFiniteOutput', 'Prediction', 'Predictor']


@dataclass
class Prediction:
    """labels (X, Y, Z) uint8 class per voxel; probs (C, X, Y, Z) float32 when asked for;
    fov_mask (X, Y, Z) bool, voxels the camera sees; warnings {kind: message} about the frame
    (see :func:`~ssc_core.frame_inputs.depth_warnings`), empty for a good frame; view: how much
    of the grid this camera lets the network see."""
    labels: np.ndarray
    fov_mask: np.ndarray
    probs: np.ndarray | None = None
    warnings: dict[str, str] = field(default_factory=dict)
    view: ViewReport | None = None


@dataclass(frozen=True)
class CameraGeometry:
    """Per-calibration constants: how the image is fitted, the network's projection input, the
    output-grid FOV and the fraction of the grid in view."""
    fit: ImageFit
    network: VoxelProjection
    output_fov: np.ndarray
    view: ViewReport


ALIGNMENT = 64  # bytes between the inputs in the buffer of :func:`batch_to_device`


def batch_to_device(frames: list[dict[str, np.ndarray]], keys, device) -> dict[str, torch.Tensor]:
    """Frames' arrays (same shape per key) → {key: (B, ...) tensor on ``device``}, stacked into one
    host buffer (pinned for a GPU) and moved in one asynchronous copy: the tensors are views of
    one device buffer."""
    device = torch.device(device)
    layout, size = [], 0  # (key, torch dtype, shape, first byte, bytes)
    for key in keys:
        first = np.asarray(frames[0][key])
        shape = (len(frames), *first.shape)
        size = -(-size // ALIGNMENT) * ALIGNMENT
        nbytes = first.nbytes * len(frames)
        layout.append((key, torch.from_numpy(first[:0].reshape(0)).dtype, shape, size, nbytes))
        size += nbytes
    host = torch.empty(size, dtype=torch.uint8, pin_memory=device.type == 'cuda')
    for key, dtype, shape, offset, nbytes in layout:
        stacked = host[offset:offset + nbytes].view(dtype).view(shape).numpy()
        for i, frame in enumerate(frames):
            if np.shape(frame[key]) != shape[1:]:
                raise ValueError(f'{key}: frame {i} has shape {np.shape(frame[key])}, frame 0 {shape[1:]}')
            stacked[i] = frame[key]
    moved = host.to(device, non_blocking=True)
    return {key: moved[offset:offset + nbytes].view(dtype).view(shape)
            for key, dtype, shape, offset, nbytes in layout}


class Predictor:
    """Runs Symphonies on camera frames, on a backend (PyTorch or ONNX Runtime).

    Camera geometry (voxel → pixel projection, field-of-view masks) is computed from ``K`` and
    the grid pose exactly as the authors' datasets do, and cached per calibration and image size.

    Args:
        network: a :class:`Symphonies` module (run with PyTorch on ``device`` at ``precision``,
            see :class:`~ssc_core.backends.TorchBackend`) or a :class:`~ssc_core.backends.Backend`.
        preset: the network's dataset settings.
        fit: how images of another size become the network's input, one of
            :data:`~ssc_core.frame_inputs.FIT_POLICIES` (see :func:`~ssc_core.frame_inputs.plan_fit`).
    """

    def __init__(self, network, preset: Preset, device='cpu', precision: str = 'fp32',
                 fit: str = 'auto'):
        if fit not in FIT_POLICIES:
            raise ValueError(f'fit: expected one of {", ".join(FIT_POLICIES)}, got {fit!r}')
        self.fit = fit
        self.backend = (TorchBackend(network, device, precision) if isinstance(network, Symphonies)
                        else network)
        self.device = self.backend.device
        self.preset = preset
        self._geometry: OrderedDict[bytes, CameraGeometry] = OrderedDict()

    @classmethod
    def from_checkpoint(cls, path, preset: Preset | str | None = None, device='cpu',
                        precision: str = 'fp32', backend: str = 'torch',
                        allow_fallback: bool = False, fit: str = 'auto') -> 'Predictor':
        """Build from a checkpoint (torch, torch_compile, torch_cudagraph) or an exported
        ``.onnx`` file (onnxruntime)."""
        if isinstance(preset, str):
            preset = get_preset(preset)
        if backend in ('torch', 'torch_compile', 'torch_cudagraph'):
            model, preset = load_model(path, preset, device)
            if backend == 'torch_cudagraph':
                return cls(CudaGraphBackend(model, device, precision), preset, fit=fit)
            return cls(TorchBackend(model, device, precision, compile=backend == 'torch_compile'), preset,
                       fit=fit)
        if backend == 'onnxruntime':
            from .backends.onnxruntime_backend import OnnxRuntimeBackend
            runtime = OnnxRuntimeBackend(path, device, precision, allow_fallback)
            if preset is not None and runtime.preset.differences(preset):
                raise CheckpointError(f'{path}: exported for preset {runtime.preset.name!r} '
                                      f'(image {runtime.preset.image_shape}), not {preset.name!r} '
                                      f'(image {preset.image_shape})')
            return cls(runtime, runtime.preset, fit=fit)
        raise ValueError(f'backend: expected one of {", ".join(BACKENDS)}, got {backend!r}')

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.preset.class_names

    def geometry(self, K, cam_from_grid, image_size: tuple[int, int] | None = None) -> CameraGeometry:
        """Image fit, projection of the network grid, output-grid FOV and view for one calibration
        and (h, w) image size (default: the network's), cached."""
        K, pose = check_calibration(K, cam_from_grid)
        image_size = tuple(int(n) for n in (image_size or self.preset.image_shape))
        check_image_size(image_size)
        check_intrinsics(K, image_size)
        key = K.tobytes() + pose.tobytes() + np.array(image_size).tobytes()
        if key in self._geometry:
            self._geometry.move_to_end(key)
            return self._geometry[key]
        fit = plan_fit(image_size, K, pose, self.preset, self.fit)
        network, output = project_grids(self.preset, fit.K, pose)
        geometry = CameraGeometry(fit, network, output.fov_mask.reshape(self.preset.model.scene_shape),
                                  view_report(fit, output, image_size, K, pose, self.preset))
        self._geometry[key] = geometry
        while len(self._geometry) > 8:
            self._geometry.popitem(last=False)
        return geometry

    def prepare(self, images, depths, Ks, cams_from_grid) -> dict[str, torch.Tensor]:
        """Lists of frames → the network's keyword inputs, batched on the device."""
        return self._batch(self._frames(images, depths, Ks, cams_from_grid)[0])

    def _frames(self, images, depths, Ks, cams_from_grid):
        """→ (each frame's network inputs, each frame's :class:`CameraGeometry`)."""
        if not (len(images) == len(depths) == len(Ks) == len(cams_from_grid)) or not images:
            raise ValueError('images, depths, Ks and cams_from_grid must be non-empty lists of equal length')
        frames, geometries = [], []
        for image, depth, K, pose in zip(images, depths, Ks, cams_from_grid, strict=True):
            geometry = self.geometry(K, pose, np.shape(image)[:2])
            frames.append(frame_inputs(image, depth, geometry.fit, pose, self.preset, geometry.network))
            geometries.append(geometry)
        return frames, geometries

    def _batch(self, frames: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        return batch_to_device(frames, NETWORK_INPUTS, self.device)

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

        A frame without valid depth inside the grid still gets a prediction (from the image
        alone), with a ``no_depth_in_grid`` entry in ``Prediction.warnings``. A frame whose
        logits hold NaN or inf gets none: :class:`NonFiniteOutput` (kind ``non_finite_output``).
        """
        return self.predict_batch([image], [depth], [K], [cam_from_grid], return_probs)[0]

    def predict_batch(self, images, depths, Ks, cams_from_grid,
                      return_probs: bool = False) -> list[Prediction]:
        """Several frames, in runs of at most ``backend.max_batch``; each gives its single-frame result."""
        frames, geometries = self._frames(images, depths, Ks, cams_from_grid)
        warnings = [depth_warnings(f['depth'], f['cam_K'], f['cam_pose'], self.preset) for f in frames]
        inputs = self._batch(frames)
        step = self.backend.max_batch or len(images)
        runs = [self.backend.run({k: v[i:i + step] for k, v in inputs.items()}, return_probs)
                for i in range(0, len(images), step)]
        labels = np.concatenate([r[0] for r in runs])
        logits = torch.cat([r[1] for r in runs]) if return_probs else None
        probs = logits.softmax(1).cpu().numpy() if return_probs else [None] * len(labels)
        for frame_warnings, g in zip(warnings, geometries, strict=True):
            if g.view.small:
                frame_warnings['small_view'] = (f'{g.view.describe()}: little of the grid is seen '
                                                '(check the camera, its calibration or the fit policy)')
        return [Prediction(labels[i], g.output_fov, probs[i], warnings[i], g.view)
                for i, g in enumerate(geometries)]
