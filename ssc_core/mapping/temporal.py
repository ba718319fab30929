"""The temporal protocol's pieces: a frame's grid fused from a window of frames, and flicker.

Fused grid of frame t (window K): a map built from frames t-K..t (their predictions, integrated
where each camera sees), read back into frame t's grid; voxels the map has no evidence for keep
frame t's own prediction, so K = 0 gives the single-frame grid exactly.

Flicker: of the voxels in the overlap of consecutive scored frames whose ground-truth class does
not change (resampled into the later frame's grid, unobserved voxels left out), the fraction
whose predicted class changes.
"""
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .evidence import UNKNOWN
from .semantic_map import SemanticMap


@dataclass
class FramePrediction:
    """labels (X, Y, Z) uint8; observed (X, Y, Z) bool (the camera's field of view);
    world_from_grid (4, 4); stamp (s); confidence (X, Y, Z), the labels' probabilities, or None."""
    labels: np.ndarray
    observed: np.ndarray
    world_from_grid: np.ndarray
    stamp: float
    confidence: np.ndarray | None = None


def fused_labels(window: list[FramePrediction], new_map: Callable[[], SemanticMap]) -> np.ndarray:
    """The last frame's grid from a map of the whole ``window`` (oldest first)."""
    semantic_map = new_map()
    for frame in window:
        semantic_map.integrate(frame.labels, frame.observed, frame.world_from_grid, frame.stamp,
                               confidence=frame.confidence)
    last = window[-1]
    fused = semantic_map.crop(last.world_from_grid, last.labels.shape)
    return np.where(fused == UNKNOWN, last.labels, fused)


def resample(labels: np.ndarray, src_pose, dst_pose, like: SemanticMap) -> np.ndarray:
    """A label grid (IGNORE/UNKNOWN = 255 where not known) at ``src_pose`` seen from a grid of the
    same shape at ``dst_pose``, by the map's nearest-voxel rule (255 outside)."""
    known = labels != UNKNOWN
    one = SemanticMap(like.voxel_size, like.class_names, like.grid_origin, slots=1, max_jump=None)
    one.integrate(np.where(known, labels, 0).astype(np.uint8), known, src_pose, 0.0)
    return one.crop(dst_pose, labels.shape)


class Flicker:
    """Counts flicker over a sequence: ``add`` each scored frame in order; ``value`` is the ratio."""

    def __init__(self, like: SemanticMap):
        self.like = like
        self.previous = None
        self.changed = 0
        self.stable = 0

    def add(self, prediction: np.ndarray, target: np.ndarray, world_from_grid) -> None:
        """A frame's predicted labels and target (255 = unobserved) at its pose."""
        if self.previous is not None:
            last_prediction, last_target, last_pose = self.previous
            was = resample(last_prediction, last_pose, world_from_grid, self.like)
            was_target = resample(last_target, last_pose, world_from_grid, self.like)
            stable = (was != UNKNOWN) & (target != UNKNOWN) & (was_target == target)
            self.stable += int(stable.sum())
            self.changed += int((stable & (was != prediction)).sum())
        self.previous = (prediction, target, world_from_grid)

    @property
    def value(self) -> float:
        return self.changed / self.stable if self.stable else 0.0
