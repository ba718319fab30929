"""Write SemanticKITTI benchmark submission files for a split (default: test).

    python -m ssc_core.tools.test --checkpoint symphonies.safetensors --data-root /data/kitti \\
        --depth-root /data/depth --output submission

Writes <output>/sequences/XX/predictions/FRAME.label (uint16 raw SemanticKITTI ids, 256x256x32
C-order), the format of the benchmark's server.
"""
import argparse
from pathlib import Path

from ..evaluation import predict_frames, submission_labels, write_atomic
from .common import add_dataset_arguments, load_frames, load_predictor


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser, 'test', labels=False)
    parser.add_argument('--output', required=True, help='submission folder')
    args = parser.parse_args(argv)
    frames = load_frames(args, with_labels=False)
    predictor = load_predictor(args)
    if predictor.preset.model.scene_shape != (256, 256, 32):
        parser.error(f'preset {predictor.preset.name} predicts {predictor.preset.model.scene_shape}, '
                     'the benchmark needs 256x256x32')
    for frame, labels in predict_frames(predictor, frames, args.batch_size, args.num_workers):
        path = Path(args.output) / 'sequences' / frame.sequence / 'predictions' / f'{frame.frame_id}.label'
        write_atomic(path, submission_labels(labels, predictor.class_names).tobytes())
    print(f'wrote {len(frames)} predictions under {Path(args.output) / "sequences"}')


if __name__ == '__main__':
    main()
