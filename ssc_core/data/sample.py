"""Built-in frames: no dataset needed.

* :func:`sample_frame`: the analytic frame the reference fixtures were made with (a striped
  image over a ground plane with four boxes) — for checking and timing the network;
* :func:`street_frame`: a procedural street with its voxel ground truth — for the demo.
"""
from dataclasses import dataclass

import numpy as np

from ..labels import IGNORE_LABEL
from ..presets import Preset

# (u0, u1, v0, v1, depth in metres) of the fronto-parallel boxes.
BOXES = ((250, 420, 120, 230, 12.0), (700, 860, 150, 205, 25.0), (980, 1180, 60, 260, 8.0),
         (520, 600, 170, 195, 40.0))
CAMERA_HEIGHT = 1.7


@dataclass
class Frame:
    """image (H, W, 3) float32 RGB in [0, 1]; depth (H, W) float32 metres; K (3, 3);
    cam_from_grid (4, 4)."""
    image: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    cam_from_grid: np.ndarray


def sample_frame(preset: Preset) -> Frame:
    """The analytic frame at the preset's image size and calibration."""
    height, width = preset.image_shape
    K = np.array(preset.cam_K, np.float64)
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                       indexing='ij')
    red = 0.5 + 0.35 * np.sin(2 * np.pi * 3 * u / width) * np.cos(2 * np.pi * 1.5 * v / height)
    green = 0.45 + 0.3 * np.cos(2 * np.pi * 2 * (u + 2 * v) / width)
    blue = 0.4 + 0.25 * np.sin(2 * np.pi * 2.5 * v / height + u / width)
    image = np.clip(np.stack([red, green, blue], -1), 0, 1).astype(np.float32)

    dv = v + 0.5 - K[1, 2]
    with np.errstate(divide='ignore'):
        depth = np.where(dv > 0, K[1, 1] * CAMERA_HEIGHT / dv, 80.0)
    depth = np.clip(depth, 1, 80)
    for u0, u1, v0, v1, z in BOXES:
        depth[v0:v1, u0:u1] = np.minimum(depth[v0:v1, u0:u1], z)
    return Frame(image, depth.astype(np.float32), K, np.array(preset.cam_from_grid, np.float64))


@dataclass
class StreetFrame(Frame):
    """A synthetic street frame with its ground truth: labels (X, Y, Z) uint8 on the preset grid."""
    labels: np.ndarray


def street_frame(preset: Preset, seed: int = 3, distance: float = 20.0) -> StreetFrame:
    """A procedural street (``ssc_core.data.synthetic``) seen through the preset's camera after
    driving ``distance`` metres, with its voxel labels at the preset's output grid."""
    from .label_files import downsample_majority
    from .synthetic import make_scene, render, voxelize

    height, width = preset.image_shape
    K = np.array(preset.cam_K, np.float64)
    tr = np.array(preset.cam_from_grid, np.float64)
    boxes = make_scene(distance + 60.0, seed)
    offset = np.linalg.inv(tr)[:3, :3] @ np.array([0.0, 0.0, distance])
    image, depth = render(boxes, offset, K, tr, (width, height))
    labels, invalid = voxelize(boxes, offset)
    labels[invalid] = IGNORE_LABEL
    factor = round(preset.model.voxel_size / 0.2)
    return StreetFrame(image, depth, K, tr, downsample_majority(labels, factor))
