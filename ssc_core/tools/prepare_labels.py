"""Prepare SemanticKITTI voxel targets: raw ``.label``/``.invalid`` → ``FRAME_1_1.npy`` (20-class
ids, invalid = 255) and ``FRAME_1_8.npy`` (MonoScene's majority downsampling).

    python -m ssc_core.tools.prepare_labels --data-root /data/semantic_kitti --label-root /data/labels

Existing outputs are kept unless --overwrite; files are written atomically.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.label_files import LabelError, downsample_majority, read_raw_voxels
from ..files import atomic_path


def prepare_frame(stem: Path, out_dir: Path, overwrite: bool = False) -> bool:
    """One frame; returns False when its outputs already existed and were kept."""
    outputs = {1: out_dir / f'{stem.name}_1_1.npy', 8: out_dir / f'{stem.name}_1_8.npy'}
    if not overwrite and all(p.is_file() for p in outputs.values()):
        return False
    labels = read_raw_voxels(stem)
    for factor, path in outputs.items():
        with atomic_path(path) as tmp, open(tmp, 'wb') as f:
            np.save(f, downsample_majority(labels, factor))
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-root', required=True, help='folder holding dataset/sequences/XX/voxels')
    parser.add_argument('--label-root', required=True, help='output folder (label_root/XX/FRAME_1_1.npy)')
    parser.add_argument('--sequences', nargs='*', help='default: every sequence with voxels')
    parser.add_argument('--overwrite', action='store_true')
    args = parser.parse_args(argv)
    seq_root = Path(args.data_root) / 'dataset' / 'sequences'
    if not seq_root.is_dir():
        sys.exit(f'prepare_labels: {seq_root} not found (expected <data-root>/dataset/sequences/XX/voxels)')
    sequences = args.sequences or sorted(p.name for p in seq_root.iterdir() if (p / 'voxels').is_dir())
    stems = []
    for seq in sequences:
        voxel_dir = seq_root / seq / 'voxels'
        if not voxel_dir.is_dir():
            sys.exit(f'prepare_labels: {voxel_dir} not found')
        stems += [(seq, p.with_suffix('')) for p in sorted(voxel_dir.glob('*.label'))]
    if not stems:
        sys.exit(f'prepare_labels: no .label files under {seq_root}/*/voxels')
    written = 0
    try:
        for seq, stem in tqdm(stems, desc='labels', unit='frame'):
            written += prepare_frame(stem, Path(args.label_root) / seq, args.overwrite)
    except LabelError as e:
        sys.exit(f'prepare_labels: {e}')
    print(f'{written} frames written, {len(stems) - written} kept, under {args.label_root}')


if __name__ == '__main__':
    main()
