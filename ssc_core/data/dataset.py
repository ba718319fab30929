"""A dataset of camera frames with semantic voxel targets, in the form the network trains on.

Readers of the on-disk formats (``semantic_kitti.py``, ``kitti_360.py``) only list
:class:`FrameRecord` s; this class loads, crops, normalizes and computes the geometry.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..frame_inputs import frame_inputs, plan_fit, project_grids
from ..geometry import frustum_cells, local_frustums
from ..presets import Preset
from .label_files import downsample_majority, read_target
from .photometric import Photometric

SOURCE_VOXEL_SIZE = 0.2   # prepared targets are 0.2 m (FRAME_1_1.npy) and 1.6 m (FRAME_1_8.npy)
SOURCE_GRID = (256, 256, 32)


@dataclass(frozen=True)
class FrameRecord:
    """One frame on disk. ``target`` is the prepared ``FRAME_1_1.npy`` (None for test splits);
    ``depth`` is None when only stored predictions are scored."""
    sequence: str
    frame_id: str
    image: Path
    depth: Path | None
    target: Path | None
    K: np.ndarray
    cam_from_grid: np.ndarray

    def check_files(self, layout: str = '') -> None:
        """Raise FileNotFoundError naming the first missing file (and the expected layout)."""
        for path in (self.image, self.depth, self.target):
            if path is not None and not path.is_file():
                raise FileNotFoundError(f'{path}: missing for frame {self.sequence}/{self.frame_id}{layout}')


def target_factor(preset: Preset) -> int:
    """How many 0.2 m voxels a preset's voxel spans per axis (1, 2, 4 or 8); ValueError otherwise."""
    factor = preset.model.voxel_size / SOURCE_VOXEL_SIZE
    if abs(factor - round(factor)) > 1e-6 or round(factor) not in (1, 2, 4, 8):
        raise ValueError(f'preset {preset.name}: voxel size {preset.model.voxel_size} m must be '
                         f'{SOURCE_VOXEL_SIZE} m times 1, 2, 4 or 8')
    return round(factor)


def load_target(path: Path, preset: Preset) -> np.ndarray:
    """A prepared target (``FRAME_1_1.npy``) on the preset's output grid (X, Y, Z) uint8, by the
    majority rule (the 1:8 file ``FRAME_1_8.npy`` when the preset is 8 times coarser and it exists)."""
    num_classes = preset.model.num_classes
    factor = target_factor(preset)
    if factor == 8:
        coarse = path.with_name(path.name.replace('_1_1.npy', '_1_8.npy'))
        if coarse.is_file():
            return read_target(coarse, [s // 8 for s in SOURCE_GRID], num_classes)
    return downsample_majority(read_target(path, SOURCE_GRID, num_classes), factor)


class SSCDataset(torch.utils.data.Dataset):
    """Frames → network inputs and training targets at the preset's output grid.

    Sample keys: img (3, H, W), depth (H, W), cam_K (3, 3), cam_pose (4, 4), voxel_origin (3,),
    projected_pix (Np, 2) int64, fov_mask (Np,) bool, and with targets: target (X, Y, Z) int64
    (IGNORE_LABEL = ignore), frustum_ids (X, Y, Z) int16, frustums_class_dists (F, C); plus sequence and
    frame_id strings.

    Items are indexed by frame number, or by ``(frame number, flip, photometric seed)`` keys that
    the sampler (``ssc_core.training.data.EpochSampler``) draws: ``flip`` is the authors' training
    augmentation, a horizontal flip of image, depth and target (the geometry is kept); the seed
    draws the ``photometric`` changes of the image, if any.

    Args:
        frames: from a reader. preset: network and geometry. frustum_size: frustums per image side.
        fit: how images become the network's input (:func:`~ssc_core.frame_inputs.plan_fit`;
            ``auto`` keeps the authors' crop for KITTI-sized images).
        photometric: camera-like image changes for training (:class:`Photometric`), or None.
    """

    def __init__(self, frames: list[FrameRecord], preset: Preset, frustum_size: int = 8,
                 fit: str = 'auto', photometric: Photometric | None = None):
        if not frames:
            raise ValueError('the dataset has no frames')
        self.frames = frames
        self.preset = preset
        self.frustum_size = frustum_size
        self.fit = fit
        self.photometric = photometric
        target_factor(preset)
        self._geometry = {}

    def __len__(self):
        return len(self.frames)

    def geometry(self, K, pose, image_size):
        """(fit, network projection, frustum cells) for one calibration and (h, w) image size."""
        key = K.tobytes() + pose.tobytes() + np.array(image_size).tobytes()
        if key not in self._geometry:
            height, width = self.preset.image_shape
            fit = plan_fit(image_size, K, pose, self.preset, self.fit)
            network, output = project_grids(self.preset, fit.K, pose)
            cells = frustum_cells(output.projected_pix, output.pix_z, (width, height), self.frustum_size)
            self._geometry[key] = (fit, network, cells)
        return self._geometry[key]

    def load_target(self, path: Path) -> np.ndarray:
        return load_target(path, self.preset)

    def __getitem__(self, key: int | tuple[int, bool, int]):
        index, flip, seed = key if isinstance(key, tuple) else (key, False, None)
        frame = self.frames[index]
        try:
            image = np.asarray(Image.open(frame.image).convert('RGB'))
        except OSError as e:
            raise ValueError(f'{frame.image}: cannot read image ({e})') from None
        if self.photometric is not None and seed is not None:
            image = self.photometric(image, seed)
        depth = np.load(frame.depth)
        if depth.shape != image.shape[:2]:
            raise ValueError(f'{frame.depth}: depth {depth.shape} differs from image '
                             f'{image.shape[:2]} ({frame.image})')
        if flip:
            image, depth = image[:, ::-1], depth[:, ::-1]
        fit, network, cells = self.geometry(frame.K, frame.cam_from_grid, image.shape[:2])
        inputs = frame_inputs(image, depth, fit, frame.cam_from_grid, self.preset, network)
        sample = {k: torch.from_numpy(v) for k, v in inputs.items()}
        sample |= {'sequence': frame.sequence, 'frame_id': frame.frame_id}
        if frame.target is not None:
            target = self.load_target(frame.target)
            if target.shape != self.preset.model.scene_shape:
                raise ValueError(f'{frame.target}: target grid {target.shape} does not match preset '
                                 f'{self.preset.name} output {self.preset.model.scene_shape}')
            if flip:
                target = np.ascontiguousarray(target[:, ::-1])
            ids, dists = local_frustums(cells, target, self.preset.model.num_classes, self.frustum_size)
            sample['target'] = torch.from_numpy(target.astype(np.int64))
            sample['frustum_ids'] = torch.from_numpy(ids)
            sample['frustums_class_dists'] = torch.from_numpy(dists)
        return sample

