"""Class tables of the benchmarks: names, the benchmark colours (RGB), the label maps."""
import numpy as np

# The label of voxels that are not scored or trained on: unobserved (``.invalid``) voxels and
# raw classes the benchmark leaves out. Targets, metrics, losses and outputs all use this one value.
IGNORE_LABEL = 255

SEMANTIC_KITTI_CLASSES = (
    'empty', 'car', 'bicycle', 'motorcycle', 'truck', 'other-vehicle', 'person', 'bicyclist',
    'motorcyclist', 'road', 'parking', 'sidewalk', 'other-ground', 'building', 'fence',
    'vegetation', 'trunk', 'terrain', 'pole', 'traffic-sign')

KITTI_360_CLASSES = (
    'empty', 'car', 'bicycle', 'motorcycle', 'truck', 'other-vehicle', 'person', 'road',
    'parking', 'sidewalk', 'other-ground', 'building', 'fence', 'vegetation', 'terrain', 'pole',
    'traffic-sign', 'other-structure', 'other-object')

# SemanticKITTI's color_map (semantic-kitti.yaml, stored there as BGR), here RGB by class name.
# The two SSCBench-KITTI-360 classes that SemanticKITTI lacks get colours of their own.
CLASS_COLORS = {
    'empty': (0, 0, 0), 'car': (100, 150, 245), 'bicycle': (100, 230, 245),
    'motorcycle': (30, 60, 150), 'truck': (80, 30, 180), 'other-vehicle': (0, 0, 255),
    'person': (255, 30, 30), 'bicyclist': (255, 40, 200), 'motorcyclist': (150, 30, 90),
    'road': (255, 0, 255), 'parking': (255, 150, 255), 'sidewalk': (75, 0, 75),
    'other-ground': (175, 0, 75), 'building': (255, 200, 0), 'fence': (255, 120, 50),
    'vegetation': (0, 175, 0), 'trunk': (135, 60, 0), 'terrain': (150, 240, 80),
    'pole': (255, 240, 150), 'traffic-sign': (255, 0, 0), 'other-structure': (255, 150, 0),
    'other-object': (50, 255, 255)}


def class_colors(class_names) -> np.ndarray:
    """(num_classes, 3) uint8 RGB colours for a class table."""
    return np.array([CLASS_COLORS[n] for n in class_names], dtype=np.uint8)


# Voxel counts per class over the training split (the authors' values), for the loss weights.
SEMANTIC_KITTI_CLASS_FREQ = np.array([
    5.41773033e09, 1.57835390e07, 1.25136000e05, 1.18809000e05, 6.46799000e05, 8.21951000e05,
    2.62978000e05, 2.83696000e05, 2.04750000e05, 6.16887030e07, 4.50296100e06, 4.48836500e07,
    2.26992300e06, 5.68402180e07, 1.57196520e07, 1.58442623e08, 2.06162300e06, 3.69705220e07,
    1.15198800e06, 3.34146000e05])
KITTI_360_CLASS_FREQ = np.array([
    2264087502, 20098728, 104972, 96297, 1149426, 4051087, 125103, 105540713, 16292249, 45297267,
    14454132, 110397082, 6766219, 295883213, 50037503, 1561069, 406330, 30516166, 1950115],
    dtype=np.float64)


def class_weights(frequencies) -> np.ndarray:
    """Cross-entropy weights 1 / log(frequency + 1e-6), float32 (the authors' rule).

    frequencies: voxel counts per class, each > 1 (smaller counts give negative or infinite
    weights: ValueError).
    """
    check_class_frequencies(frequencies)
    freq = np.asarray(frequencies, np.float32)
    return (1.0 / np.log(freq + np.float32(1e-6))).astype(np.float32)


def check_class_frequencies(frequencies) -> None:
    """ValueError unless every class frequency is a finite voxel count above 1."""
    freq = np.asarray(frequencies, np.float64)
    if not np.all(np.isfinite(freq) & (freq > 1)):
        raise ValueError(f'class_frequencies: expected voxel counts above 1 per class (weights '
                         f'1/log(count) must be positive and finite), got min {freq.min():g}')


# SemanticKITTI raw label id → 20-class training id (semantic-kitti.yaml ``learning_map``).
# For voxels, ids mapped to 0 other than raw 0 (outlier, other-structure, other-object) are not
# empty space but IGNORE_LABEL: the official evaluator's rule (see ssc_core.data.label_files.voxel_lut).
SEMANTIC_KITTI_LEARNING_MAP = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9,
    44: 10, 48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19,
    99: 0, 252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5}
# Training id → raw label id, for benchmark submissions (``learning_map_inv``).
SEMANTIC_KITTI_LEARNING_MAP_INV = {
    0: 0, 1: 10, 2: 11, 3: 15, 4: 18, 5: 20, 6: 30, 7: 31, 8: 32, 9: 40, 10: 44, 11: 48, 12: 49,
    13: 50, 14: 51, 15: 70, 16: 71, 17: 72, 18: 80, 19: 81}
