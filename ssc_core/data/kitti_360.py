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


def kitti_360_frames(data_root, split: str, depth_root=None, label_root=None, sequences=None,
                     all_frames: bool = False) -> list[FrameRecord]:
    """Frames with voxel files of a split (or of the given drives), or with ``all_frames``
    every image (no targets then). Without ``depth_root`` the records have no depth."""
    if all_frames and label_root is not None:
        raise ValueError('all frames have no targets: only frames with voxel files have labels')
    if sequences is None:
        if split not in SPLITS:
            raise ValueError(f'unknown split {split!r}; expected one of {list(SPLITS)}')
        sequences = SPLITS[split]
    data_root = Path(data_root)
    K, tr = np.array(KITTI_360.cam_K), np.array(KITTI_360.cam_from_grid)
    frames = []
    for drive in sequences:
        drive_dir = data_root / 'data_2d_raw' / drive
        if not drive_dir.is_dir():
            raise FileNotFoundError(f'{drive_dir}: drive not found{LAYOUT}')
        images = drive_dir / 'image_00' / 'data_rect'
        ids = (sorted(p.stem for p in images.glob('*.png')) if all_frames
               else sorted(p.stem for p in (drive_dir / 'voxels').glob('*.bin')))
        for frame_id in ids:
            record = FrameRecord(
                drive, frame_id, images / f'{frame_id}.png',
                Path(depth_root) / drive / f'{frame_id}.npy' if depth_root is not None else None,
                Path(label_root) / drive / f'{frame_id}_1_1.npy' if label_root is not None else None,
                K, tr)
            record.check_files(LAYOUT)
            frames.append(record)
    if not frames:
        raise ValueError(f'no frames in drives {list(sequences)} under {data_root}{LAYOUT}')
    return frames
