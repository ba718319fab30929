"""Running a predictor over dataset frames, writing what it predicts, scoring stored predictions."""
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .data.dataset import SOURCE_GRID, FrameRecord, SSCDataset
from .data.label_files import downsample_majority, prediction_shape, read_prediction, read_target
from .files import write_atomic
from .frame_inputs import NETWORK_INPUTS
from .labels import SEMANTIC_KITTI_CLASSES, SEMANTIC_KITTI_LEARNING_MAP_INV
from .metrics import SSCMetrics
from .predictor import Predictor
from .presets import SEMANTIC_KITTI, Preset


def predict_frames(predictor: Predictor, frames: list[FrameRecord], batch_size: int = 1,
                   num_workers: int = 0, progress: bool = True) -> Iterator[tuple[FrameRecord, np.ndarray]]:
    """Yield (frame, labels (X, Y, Z) uint8) for every frame, in order."""
    records = [FrameRecord(f.sequence, f.frame_id, f.image, f.depth, None, f.K, f.cam_from_grid)
               for f in frames]
    dataset = SSCDataset(records, predictor.preset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    done = 0
    for batch in tqdm(loader, desc='frames', unit='batch', disable=not progress):
        inputs = {k: batch[k].to(predictor.device) for k in NETWORK_INPUTS}
        labels = predictor.labels(inputs)
        for i in range(len(labels)):
            yield frames[done + i], labels[i]
        done += len(labels)


def check_submittable(preset: Preset) -> int:
    """The factor that brings the preset's grid to the benchmark's 256x256x32 grid of 0.2 m
    voxels (1 for the full presets, 2 for ``small``); ValueError when it cannot."""
    cfg = preset.model
    if tuple(preset.class_names) != SEMANTIC_KITTI_CLASSES:
        raise ValueError(f'preset {preset.name}: benchmark submissions need the SemanticKITTI class '
                         'table (20 classes)')
    factor = SOURCE_GRID[0] // cfg.scene_shape[0]
    same_volume = (tuple(s * factor for s in cfg.scene_shape) == SOURCE_GRID
                   and abs(cfg.voxel_size - 0.2 * factor) < 1e-9
                   and tuple(preset.voxel_origin) == tuple(SEMANTIC_KITTI.voxel_origin))
    if not same_volume:
        raise ValueError(f'preset {preset.name}: grid {cfg.scene_shape} of {cfg.voxel_size} m does not '
                         f'cover the benchmark volume ({SOURCE_GRID} of 0.2 m from '
                         f'{SEMANTIC_KITTI.voxel_origin})')
    return factor


def submission_labels(labels: np.ndarray, preset: Preset) -> np.ndarray:
    """A prediction (X, Y, Z) class ids of the preset's grid → SemanticKITTI raw ids (uint16,
    flattened C-order) on the benchmark's 256x256x32 grid; a coarser grid's voxels are repeated."""
    factor = check_submittable(preset)
    for axis in range(3):
        labels = labels.repeat(factor, axis) if factor > 1 else labels
    inverse = np.array([SEMANTIC_KITTI_LEARNING_MAP_INV[i] for i in range(20)], np.uint16)
    return inverse[labels.reshape(-1)]


def submission_path(root, sequence: str, frame_id: str) -> Path:
    """Where the benchmark expects a frame's prediction: ``ROOT/sequences/XX/predictions/FRAME.label``."""
    return Path(root) / 'sequences' / sequence / 'predictions' / f'{frame_id}.label'


def prediction_path(root, frame: FrameRecord) -> Path:
    """A frame's stored prediction: a submission's ``.label`` (``test``), else ``ROOT/XX/FRAME.npy``
    (``infer``)."""
    label = submission_path(root, frame.sequence, frame.frame_id)
    return label if label.is_file() else Path(root) / frame.sequence / f'{frame.frame_id}.npy'


def score_predictions(root, frames: list[FrameRecord], class_names) -> tuple[dict, tuple]:
    """Scores (:func:`ssc_core.metrics.scores`) of the stored predictions under ``root`` against
    the frames' targets, and the predictions' grid shape. Targets are brought to the
    predictions' grid by the majority rule of the coarser targets (1:1 for 256x256x32)."""
    metrics = SSCMetrics(len(class_names))
    shape = prediction_shape(prediction_path(root, frames[0]))
    for frame in tqdm(frames, desc='frames', unit='frame'):
        path = prediction_path(root, frame)
        prediction = read_prediction(path, shape, len(class_names))
        target = read_target(frame.target, SOURCE_GRID, len(class_names))
        target = downsample_majority(target, SOURCE_GRID[0] // shape[0])
        metrics.update(torch.from_numpy(prediction)[None], torch.from_numpy(target)[None])
    return metrics.compute(), shape


def write_json(path, obj) -> None:
    write_atomic(Path(path), json.dumps(obj, indent=2).encode())
