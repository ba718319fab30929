"""Class tables of the benchmarks: names and the benchmark colours (RGB)."""
import numpy as np

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
