"""Running a predictor over dataset frames, writing what it predicts, scoring stored predictions."""
import io
import json
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .data.dataset import SOURCE_GRID, FrameRecord, SSCDataset, load_target
from .data.label_files import downsample_majority, prediction_shape, read_prediction, read_target
from .data.poses import sequence_motion
from .data.semantic_kitti import semantic_kitti_frames
from .files import write_atomic
from .frame_inputs import NETWORK_INPUTS
from .labels import SEMANTIC_KITTI_CLASSES, SEMANTIC_KITTI_LEARNING_MAP_INV
from .mapping import SemanticMap
from .mapping.temporal import Flicker, FramePrediction, fused_labels
from .metrics import SSCMetrics
from .predictor import Predictor
from .presets import SEMANTIC_KITTI, Preset


def predict_frames(predictor: Predictor, frames: list[FrameRecord], batch_size: int = 1,
                   num_workers: int = 0, progress: bool = True, confidence: bool = False) -> Iterator[tuple]:
    """Yield (frame, labels (X, Y, Z) uint8) for every frame, in order; with ``confidence``
    (frame, labels, confidence (X, Y, Z) float16), the confidence being the probability of the
    label (the softmax's maximum; the network's logits are computed for it)."""
    records = [FrameRecord(f.sequence, f.frame_id, f.image, f.depth, None, f.K, f.cam_from_grid)
               for f in frames]
    dataset = SSCDataset(records, predictor.preset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    done = 0
    for batch in tqdm(loader, desc='frames', unit='batch', disable=not progress):
        inputs = {k: batch[k].to(predictor.device) for k in NETWORK_INPUTS}
        if confidence:
            best, labels = predictor.logits(inputs).softmax(1).max(1)
            best, labels = best.half().cpu().numpy(), labels.to(torch.uint8).cpu().numpy()
        else:
            labels = predictor.labels(inputs)
        for i in range(len(labels)):
            yield (frames[done + i], labels[i]) + ((best[i],) if confidence else ())
        done += len(labels)


def write_prediction(root, frame: FrameRecord, labels: np.ndarray) -> Path:
    """Store a frame's labels as ``ROOT/XX/FRAME.npy`` (the ``infer`` layout), atomically."""
    buffer = io.BytesIO()
    np.save(buffer, labels)
    path = Path(root) / frame.sequence / f'{frame.frame_id}.npy'
    write_atomic(path, buffer.getvalue())
    return path


@dataclass
class SequenceInput:
    """One sequence for the temporal protocol: every image's frame (in order), with their
    world_from_grid poses (N, 4, 4) and stamps (N,); ``scored`` maps the frame ids with targets to
    their records (FrameRecord.target set)."""
    frames: list[FrameRecord]
    poses: np.ndarray
    stamps: np.ndarray
    scored: dict[str, FrameRecord]


def sequence_inputs(data_root, depth_root, label_root, split: str, sequences=None) -> list[SequenceInput]:
    """The SemanticKITTI-layout sequences of a split (or the given ones) for the temporal protocol:
    every image with its depth, pose (``poses.txt`` with ``calib.txt``'s Tr) and time
    (``times.txt``), and the frames with targets (none without ``label_root``). Missing or bad
    files raise (FileNotFoundError, ValueError, PoseError) naming them."""
    frames = semantic_kitti_frames(data_root, split, depth_root, sequences=sequences, all_frames=True)
    scored = [] if label_root is None else semantic_kitti_frames(data_root, split, depth_root, label_root,
                                                                 sequences=sequences)
    inputs = []
    for name in dict.fromkeys(f.sequence for f in frames):
        own = [f for f in frames if f.sequence == name]
        count = max(int(f.frame_id) for f in own) + 1
        poses, stamps = sequence_motion(own[0].image.parents[1], own[0].cam_from_grid, count)
        index = [int(f.frame_id) for f in own]
        inputs.append(SequenceInput(own, poses[index], stamps[index],
                                    {f.frame_id: f for f in scored if f.sequence == name}))
    return inputs


def predict_sequence(predictor: Predictor, sequence: SequenceInput, indices, progress: bool = True
                     ) -> Iterator[tuple[int, FramePrediction]]:
    """Yield (index, prediction at its pose, with the camera's field of view) for the sequence's
    images ``indices``, in order; the predictions carry their confidence."""
    first = sequence.frames[0]
    with Image.open(first.image) as image:
        size = image.size[::-1]
    observed = predictor.geometry(first.K, first.cam_from_grid, size).output_fov
    position = {f.frame_id: i for i, f in enumerate(sequence.frames)}
    wanted = [sequence.frames[i] for i in indices]
    for frame, labels, confidence in predict_frames(predictor, wanted, progress=progress, confidence=True):
        i = position[frame.frame_id]
        yield i, FramePrediction(labels, observed, sequence.poses[i], float(sequence.stamps[i]), confidence)


def temporal_scores(predictor: Predictor, sequences: list[SequenceInput], window: int,
                    new_map: Callable[[], SemanticMap], fused_output=None, progress: bool = True) -> dict:
    """The temporal protocol (:mod:`ssc_core.mapping.temporal`): each scored frame t is scored
    single (its own prediction) and fused (the map of frames t-window..t), with the same metrics.

    Returns {'single': scores, 'fused': scores}, each :func:`ssc_core.metrics.scores` plus
    ``flicker``. With ``fused_output``, the fused grids are stored there as a benchmark submission
    (:func:`write_submission`).
    """
    preset = predictor.preset
    num_classes = len(preset.class_names)
    metrics = {'single': SSCMetrics(num_classes), 'fused': SSCMetrics(num_classes)}
    flicker = {name: Flicker(new_map()) for name in metrics}
    for sequence in sequences:
        position = {f.frame_id: i for i, f in enumerate(sequence.frames)}
        needed = sorted({i for frame_id in sequence.scored for i in
                         range(max(0, position[frame_id] - window), position[frame_id] + 1)})
        recent = deque()
        for i, prediction in predict_sequence(predictor, sequence, needed, progress):
            recent.append((i, prediction))
            while recent[0][0] < i - window:
                recent.popleft()
            frame = sequence.frames[i]
            if frame.frame_id not in sequence.scored:
                continue
            fused = fused_labels([p for _, p in recent], new_map)
            target = load_target(sequence.scored[frame.frame_id].target, preset)
            for name, grid in (('single', prediction.labels), ('fused', fused)):
                metrics[name].update(torch.from_numpy(grid)[None], torch.from_numpy(target)[None])
                flicker[name].add(grid, target, prediction.world_from_grid)
            if fused_output is not None:
                write_submission(fused_output, frame, fused, preset)
    return {name: {**m.compute(), 'flicker': flicker[name].value} for name, m in metrics.items()}


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


def write_submission(root, frame: FrameRecord, labels: np.ndarray, preset: Preset) -> Path:
    """Store a frame's labels as the benchmark's ``ROOT/sequences/XX/predictions/FRAME.label``
    (:func:`submission_labels`), atomically."""
    path = submission_path(root, frame.sequence, frame.frame_id)
    write_atomic(path, submission_labels(labels, preset).tobytes())
    return path


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
