"""Running a predictor over dataset frames, and writing what it predicts."""
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .data.dataset import FrameRecord, SSCDataset
from .frame_inputs import NETWORK_INPUTS
from .labels import SEMANTIC_KITTI_CLASSES, SEMANTIC_KITTI_LEARNING_MAP_INV
from .predictor import Predictor


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


def submission_labels(labels: np.ndarray, class_names) -> np.ndarray:
    """20-class ids → SemanticKITTI raw ids (uint16, flattened C-order) for the benchmark."""
    if tuple(class_names) != SEMANTIC_KITTI_CLASSES:
        raise ValueError('benchmark submissions need the SemanticKITTI class table (20 classes)')
    inverse = np.array([SEMANTIC_KITTI_LEARNING_MAP_INV[i] for i in range(20)], np.uint16)
    return inverse[labels.reshape(-1)]


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    write_atomic(Path(path), json.dumps(obj, indent=2).encode())
