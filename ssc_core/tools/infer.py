"""Predict every frame of a split (or of given sequences) and save the labels per frame.

    python -m ssc_core.tools.infer --checkpoint symphonies.safetensors --data-root /data/kitti \\
        --depth-root /data/depth --sequences 08 --output outputs/infer

Writes <output>/XX/FRAME.npy: uint8 class ids of the preset's grid (X, Y, Z).
"""
import argparse

from ..evaluation import predict_frames, write_prediction
from .common import add_dataset_arguments, load_frames, load_predictor


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser, 'val', labels=False)
    parser.add_argument('--output', required=True)
    args = parser.parse_args(argv)
    frames = load_frames(args, with_labels=False, all_frames=True)
    predictor = load_predictor(args)
    for frame, labels in predict_frames(predictor, frames, args.batch_size, args.num_workers):
        write_prediction(args.output, frame, labels)
    print(f'wrote {len(frames)} predictions under {args.output}')


if __name__ == '__main__':
    main()
