"""The node's semantic map: one lock for the threads that touch it, publishing rate limited. No ROS.

The inference thread integrates frames, the map thread takes snapshots to publish, the executor's
service callbacks reset, save and load; all of them go through :class:`LiveMap`, which holds the
:class:`~ssc_core.mapping.SemanticMap` and its lock. Publishing takes the lock only for the
snapshot (a dense box of labels, :meth:`~ssc_core.mapping.SemanticMap.labels_box`); messages are
built from it outside the lock.
"""
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ssc_core.mapping import PoseJump, SemanticMap, occupied_points, save_map, write_ply


@dataclass(frozen=True)
class MapSnapshot:
    """The map at one moment: ``labels`` (X, Y, Z) uint8 (255 = no evidence) over the box whose
    voxel (0, 0, 0) has its corner at ``origin`` (3,) metres in the map frame; ``stamp`` (s) of the
    last integrated frame (None: none yet)."""
    labels: np.ndarray
    origin: np.ndarray
    stamp: float | None
    frames: int
    blocks: int


def default_save_path(now: datetime | None = None) -> Path:
    """``ssc_map_<date>_<time>`` in the working directory (as map_saver writes ``map`` there)."""
    return Path(f'ssc_map_{(now or datetime.now()).strftime("%Y%m%d_%H%M%S")}')


class LiveMap:
    """A :class:`SemanticMap` shared by threads, published at most once per ``period`` seconds.

    ``max_speed`` (m/s, None: no check) bounds the motion between integrated frames: the node
    integrates the frames it has time for, so the map's ``max_jump`` is set for each frame to
    ``max_speed`` times the time since the last one (plus a voxel for stamp jitter).
    """

    def __init__(self, semantic_map: SemanticMap, period: float, max_speed: float | None = None,
                 clock=time.monotonic):
        self.map = semantic_map
        self.period = period
        self.max_speed = max_speed
        self.clock = clock
        self.lock = threading.Lock()
        self.last_published = -float('inf')

    def integrate(self, labels, observed, map_from_grid, stamp: float) -> None:
        """Fuse one frame (MapError, map untouched, when the map refuses it)."""
        with self.lock:
            m = self.map
            elapsed = None if m.last_stamp is None else max(stamp - m.last_stamp, 0.0)
            m.max_jump = None if self.max_speed is None or elapsed is None else \
                self.max_speed * elapsed + m.voxel_size
            try:
                m.integrate(labels, observed, map_from_grid, stamp)
            except PoseJump as e:
                raise PoseJump(f'{e}: faster than map_max_speed {self.max_speed:g} m/s over '
                               f'{elapsed:.2f} s') from None

    def reset(self) -> None:
        with self.lock:
            self.map.clear()

    def set_policy(self, **policies) -> None:
        """Change the map's ``radius`` or ``half_life`` (None: off) between frames."""
        with self.lock:
            for name, value in policies.items():
                setattr(self.map, name, value)

    def save(self, stem) -> tuple[Path, Path]:
        """Write ``stem``.npz (the whole evidence, :func:`~ssc_core.mapping.load_map` reads it) and
        ``stem``.ply (occupied voxel centres in class colours), each atomically."""
        stem = Path(stem)
        if stem.suffix in ('.npz', '.ply'):
            stem = stem.with_suffix('')
        with self.lock:
            npz = save_map(self.map, stem.with_name(stem.name + '.npz'))
            centres, classes = occupied_points(self.map)
        return npz, write_ply(stem.with_name(stem.name + '.ply'), centres, classes, self.map.class_names)

    def wait_time(self) -> float:
        """Seconds until the next publication is due (0: now)."""
        return max(0.0, self.last_published + self.period - self.clock())

    def snapshot(self) -> MapSnapshot:
        """The map now; marks a publication (for :meth:`wait_time`)."""
        with self.lock:
            labels, corner = self.map.labels_box()
            m = self.map
            snapshot = MapSnapshot(labels, m.grid_origin + corner * m.voxel_size, m.last_stamp, m.frames,
                                   m.num_blocks)
        self.last_published = self.clock()
        return snapshot
