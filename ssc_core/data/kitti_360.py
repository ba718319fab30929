"""SSCBench-KITTI-360 on disk (the authors' layout)::

    <data_root>/data_2d_raw/<drive>/image_00/data_rect/FRAME.png
    <data_root>/data_2d_raw/<drive>/voxels/FRAME.bin
    <depth_root>/<drive>/FRAME.npy             stereo depth, metres
    <label_root>/<drive>/FRAME_1_1.npy          prepared targets

The calibration is the fixed SSCBench camera 00 (preset ``kitti_360``).
"""
from pathlib import Path

import numpy as np

from ..presets import KITTI_360
from .dataset import FrameRecord

SPLITS = {
    'train': ('2013_05_28_drive_0004_sync', '2013_05_28_drive_0000_sync',
              '2013_05_28_drive_0010_sync', '2013_05_28_drive_0002_sync',
              '2013_05_28_drive_0003_sync', '2013_05_28_drive_0005_sync',
              '2013_05_28_drive_0007_sync'),
    'val': ('2013_05_28_drive_0006_sync',),
    'test': ('2013_05_28_drive_0009_sync',),
}
LAYOUT = '\nexpected layout:' + __doc__.split('::', 1)[1].rstrip()


def kitti_360_frames(data_root, split: str, depth_root, label_root=None, sequences=None) -> list[FrameRecord]:
    """Frames with voxel labels of a split (or of the given drives)."""
    if sequences is None:
        if split not in SPLITS:
            raise ValueError(f'unknown split {split!r}; expected one of {list(SPLITS)}')
        sequences = SPLITS[split]
    data_root, depth_root = Path(data_root), Path(depth_root)
    K, tr = np.array(KITTI_360.cam_K), np.array(KITTI_360.cam_from_grid)
    frames = []
    for drive in sequences:
        drive_dir = data_root / 'data_2d_raw' / drive
        if not drive_dir.is_dir():
            raise FileNotFoundError(f'{drive_dir}: drive not found{LAYOUT}')
        for frame_id in sorted(p.stem for p in (drive_dir / 'voxels').glob('*.bin')):
            record = FrameRecord(
                drive, frame_id, drive_dir / 'image_00' / 'data_rect' / f'{frame_id}.png',
                depth_root / drive / f'{frame_id}.npy',
                Path(label_root) / drive / f'{frame_id}_1_1.npy' if label_root is not None else None,
                K, tr)
            record.check_files(LAYOUT)
            frames.append(record)
    if not frames:
        raise ValueError(f'no frames in drives {list(sequences)} under {data_root}{LAYOUT}')
    return frames
