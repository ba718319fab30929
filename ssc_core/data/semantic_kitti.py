"""SemanticKITTI on disk::

    <data_root>/dataset/sequences/XX/{calib.txt, poses.txt, image_2/FRAME.png, voxels/FRAME.bin}
    <depth_root>/sequences/XX/FRAME.npy        stereo depth, metres (H, W)
    <label_root>/XX/FRAME_1_1.npy, FRAME_1_8.npy   prepared targets (prepare_labels)
"""
from pathlib import Path

import numpy as np

from .dataset import FrameRecord

SPLITS = {
    'train': ('00', '01', '02', '03', '04', '05', '06', '07', '09', '10'),
    'val': ('08',),
    'test': ('11', '12', '13', '14', '15', '16', '17', '18', '19', '20', '21'),
}
LAYOUT = '\nexpected layout:' + __doc__.split('::', 1)[1].rstrip()


def read_calib_matrices(path) -> dict[str, np.ndarray]:
    """``calib.txt`` → {name: its numbers (flat)}, e.g. 'P2' (12), 'P3' (12), 'Tr' (12)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: calibration missing{LAYOUT}')
    values = {}
    for line in path.read_text().splitlines():
        if ':' in line:
            key, rest = line.split(':', 1)
            try:
                values[key.strip()] = np.array([float(v) for v in rest.split()])
            except ValueError:
                raise ValueError(f'{path}: unreadable line {line!r}') from None
    return values


def read_calib(path) -> tuple[np.ndarray, np.ndarray]:
    """``calib.txt`` → (K (3, 3) = P2[:3, :3], Tr (4, 4) velodyne → camera)."""
    values = read_calib_matrices(path)
    for key, size in (('P2', 12), ('Tr', 12)):
        if key not in values or values[key].size != size:
            raise ValueError(f'{path}: needs {key} with {size} numbers')
    tr = np.eye(4)
    tr[:3] = values['Tr'].reshape(3, 4)
    return values['P2'].reshape(3, 4)[:, :3].copy(), tr


def semantic_kitti_frames(data_root, split: str, depth_root=None, label_root=None,
                          sequences=None, all_frames: bool = False) -> list[FrameRecord]:
    """Frames of a split (or of the given sequences).

    Frames are those the benchmark scores, the ones with voxel files (``voxels/*.bin``, every
    5th image), or with ``all_frames`` every image (no targets then). Without ``depth_root``
    the records have no depth (for scoring stored predictions). Missing folders or files raise
    with the path and the expected layout.
    """
    if all_frames and label_root is not None:
        raise ValueError('all frames have no targets: only frames with voxel files have labels')
    if sequences is None:
        if split not in SPLITS:
            raise ValueError(f'unknown split {split!r}; expected one of {list(SPLITS)}')
        sequences = SPLITS[split]
    data_root = Path(data_root)
    frames = []
    for seq in sequences:
        seq_dir = data_root / 'dataset' / 'sequences' / seq
        if not seq_dir.is_dir():
            raise FileNotFoundError(f'{seq_dir}: sequence {seq} not found{LAYOUT}')
        K, tr = read_calib(seq_dir / 'calib.txt')
        if all_frames:
            ids = sorted(p.stem for p in (seq_dir / 'image_2').glob('*.png'))
        else:
            ids = sorted(p.stem for p in (seq_dir / 'voxels').glob('*.bin'))
        for frame_id in ids:
            record = FrameRecord(
                seq, frame_id, seq_dir / 'image_2' / f'{frame_id}.png',
                Path(depth_root) / 'sequences' / seq / f'{frame_id}.npy' if depth_root is not None else None,
                Path(label_root) / seq / f'{frame_id}_1_1.npy' if label_root is not None else None,
                K, tr)
            record.check_files(LAYOUT)
            frames.append(record)
    if not frames:
        what = 'images' if all_frames else 'voxel files (voxels/*.bin; every image: all frames)'
        raise ValueError(f'no {what} in sequences {list(sequences)} under {data_root}{LAYOUT}')
    return frames
