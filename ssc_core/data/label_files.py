"""Voxel label files: SemanticKITTI's raw ``.label``/``.invalid`` and the prepared targets."""
from pathlib import Path

import numpy as np

from ..labels import IGNORE_LABEL, SEMANTIC_KITTI_LEARNING_MAP


class LabelError(ValueError):
    """A label file that is missing, of the wrong size, or holds values outside the map."""


def voxel_lut(learning_map: dict[int, int]) -> np.ndarray:
    """Raw voxel id → training id over all uint16 values, by the official rule
    (semantic-kitti-api ``evaluate_completion.py``, MonoScene's preprocessing): raw 0 is empty (0);
    every other raw id that the learning map sends to 0 (outlier, other-structure, other-object)
    is IGNORE_LABEL; ids outside the map give -1."""
    lut = np.full(65536, -1, np.int32)
    for raw, train in learning_map.items():
        lut[raw] = train if train != 0 or raw == 0 else IGNORE_LABEL
    return lut


def read_raw_voxels(stem, shape=(256, 256, 32), learning_map=SEMANTIC_KITTI_LEARNING_MAP) -> np.ndarray:
    """``<stem>.label`` (uint16 raw ids) + ``<stem>.invalid`` (bit-packed) → (X, Y, Z) uint8
    training ids (:func:`voxel_lut`) with IGNORE_LABEL where the voxel is invalid."""
    stem = Path(stem)
    n = int(np.prod(shape))
    label_path, invalid_path = Path(f'{stem}.label'), Path(f'{stem}.invalid')
    for path in (label_path, invalid_path):
        if not path.is_file():
            raise LabelError(f'{path}: missing (SemanticKITTI voxels need .label and .invalid)')
    raw = np.fromfile(label_path, np.uint16)
    if raw.size != n:
        raise LabelError(f'{label_path}: {raw.size} voxels, expected {n} for a {shape} grid')
    packed = np.fromfile(invalid_path, np.uint8)
    if packed.size * 8 != n:
        raise LabelError(f'{invalid_path}: {packed.size} bytes, expected {n // 8} (bit-packed)')
    train = voxel_lut(learning_map)[raw]
    if (train < 0).any():
        bad = np.unique(raw[train < 0])
        raise LabelError(f'{label_path}: raw label ids {bad[:10].tolist()} are not in the learning map')
    train = train.astype(np.uint8)
    train[np.unpackbits(packed).astype(bool)] = IGNORE_LABEL
    return train.reshape(shape)


def downsample_majority(labels: np.ndarray, factor: int) -> np.ndarray:
    """MonoScene's rule: a block is empty (0) or invalid (IGNORE_LABEL) — whichever is more frequent, ties
    to 255 — when more than 95 % of it is either, otherwise its most frequent class (smallest id
    on ties). (X, Y, Z) → (X/f, Y/f, Z/f) uint8."""
    if factor == 1:
        return labels.astype(np.uint8)
    x, y, z = (s // factor for s in labels.shape)
    blocks = labels.reshape(x, factor, y, factor, z, factor).transpose(0, 2, 4, 1, 3, 5)
    blocks = blocks.reshape(-1, factor ** 3).astype(np.int64)
    n = blocks.shape[0]
    codes = np.where(blocks == IGNORE_LABEL, 256, blocks)
    counts = np.bincount((np.arange(n)[:, None] * 257 + codes).ravel(), minlength=n * 257)
    counts = counts.reshape(n, 257)
    empty, invalid = counts[:, 0], counts[:, 256]
    classes = counts[:, 1:256]
    out = np.where(empty + invalid > 0.95 * factor ** 3, np.where(empty > invalid, 0, IGNORE_LABEL),
                   classes.argmax(1) + 1)
    return out.astype(np.uint8).reshape(x, y, z)


def read_target(path, shape, num_classes: int) -> np.ndarray:
    """A prepared target (``FRAME_1_1.npy`` …) checked for shape and values → uint8."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f'{path}: target missing (run the label preparation: '
                         'python -m ssc_core.tools.prepare_labels)')
    target = np.load(path)
    if target.shape != tuple(shape):
        raise LabelError(f'{path}: shape {target.shape}, expected {tuple(shape)}')
    values = np.unique(target)
    outside = (values < 0) | (values >= num_classes) | (values != np.round(values))
    bad = values[(values != IGNORE_LABEL) & outside]
    if bad.size:
        raise LabelError(f'{path}: values {bad[:10].tolist()} outside 0..{num_classes - 1} '
                         f'and {IGNORE_LABEL}')
    return target.astype(np.uint8)


def prediction_shape(path) -> tuple[int, ...]:
    """The grid shape of a stored prediction (a ``.label`` is always 256x256x32)."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f'{path}: prediction missing')
    if path.suffix == '.label':
        return (256, 256, 32)
    try:
        return tuple(np.load(path, mmap_mode='r').shape)
    except ValueError as e:
        raise LabelError(f'{path}: not a .npy label grid ({e})') from None


def read_prediction(path, shape, num_classes: int) -> np.ndarray:
    """A predicted grid: ``.npy`` class ids (``infer``) or a benchmark ``.label`` (uint16 raw
    SemanticKITTI ids, ``test``; mapped by :func:`voxel_lut`) → (X, Y, Z) uint8."""
    path = Path(path)
    if path.suffix != '.label':
        return read_target(path, shape, num_classes)
    if not path.is_file():
        raise LabelError(f'{path}: prediction missing')
    raw = np.fromfile(path, np.uint16)
    if raw.size != np.prod(shape):
        raise LabelError(f'{path}: {raw.size} voxels, expected {int(np.prod(shape))} '
                         f'for a {tuple(shape)} grid')
    ids = voxel_lut(SEMANTIC_KITTI_LEARNING_MAP)[raw]
    if (ids < 0).any():
        raise LabelError(f'{path}: raw ids {np.unique(raw[ids < 0])[:10].tolist()} not in the learning map')
    return ids.astype(np.uint8).reshape(shape)
