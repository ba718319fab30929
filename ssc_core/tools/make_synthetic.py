"""Write a synthetic dataset in the SemanticKITTI layout (see ssc_core.data.synthetic).

    python -m ssc_core.tools.make_synthetic outputs/synthetic --sequences 00 08 --frames 20
"""
import argparse

from tqdm import tqdm

from ..data.synthetic import KITTI_IMAGE_SIZE, write_sequence


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('root', help='output folder')
    parser.add_argument('--sequences', nargs='+', default=['00', '08'])
    parser.add_argument('--frames', type=int, default=20, help='frames per sequence')
    parser.add_argument('--image-size', type=int, nargs=2, default=KITTI_IMAGE_SIZE, metavar=('W', 'H'))
    parser.add_argument('--label-every', type=int, default=5, help='voxel labels every N frames')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-ground-truth', action='store_true',
                        help='voxel folders hold only the input .bin files (like the test split)')
    args = parser.parse_args(argv)
    for i, seq in enumerate(tqdm(args.sequences, desc='sequences')):
        write_sequence(args.root, seq, args.frames, tuple(args.image_size), args.label_every,
                       seed=args.seed + i, ground_truth=not args.no_ground_truth)
    print(f'wrote {len(args.sequences)} sequences of {args.frames} frames under {args.root}')


if __name__ == '__main__':
    main()
