"""Write SemanticKITTI benchmark submission files for a split (default: test).

    python -m ssc_core.tools.submit --checkpoint symphonies.safetensors --data-root /data/kitti \\
        --depth-root /data/depth --output submission --zip

Predicts the frames the benchmark scores: those with voxel files (voxels/FRAME.bin, every 5th
image); --all-frames predicts every image (the server refuses such a bundle). Writes
<output>/sequences/XX/predictions/FRAME.label (uint16 raw SemanticKITTI ids, 256x256x32 C-order;
a coarser preset's voxels, e.g. the built-in model's 0.4 m, are repeated onto that grid)
and with --zip <output>.zip, the bundle the server takes, of every prediction in the folder
(check it with the official validate_submission.py --task completion).
"""
import argparse
import zipfile
from pathlib import Path

from ..evaluation import check_submittable, predict_frames, write_submission
from ..files import atomic_path
from .common import add_dataset_arguments, load_frames, load_predictor


def write_bundle(output: Path) -> Path:
    """``output.zip`` holding every ``sequences/XX/predictions/FRAME.label`` of the folder, with
    the folder entries the benchmark's checker looks for."""
    bundle = output.with_name(output.name + '.zip')
    names = sorted(p.relative_to(output).as_posix() for p in output.glob('sequences/*/predictions/*.label'))
    folders = sorted({'/'.join(n.split('/')[:i]) + '/' for n in names for i in range(1, n.count('/') + 1)})
    with atomic_path(bundle) as tmp, zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as archive:
        for folder in folders:
            archive.writestr(zipfile.ZipInfo(folder), b'')
        for name in names:
            archive.write(output / name, name)
    return bundle


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser, 'test', labels=False)
    parser.add_argument('--output', required=True, type=Path, help='submission folder')
    parser.add_argument('--all-frames', action='store_true',
                        help='predict every image, not only the frames with voxel files')
    parser.add_argument('--zip', action='store_true', help='also write <output>.zip for the server')
    args = parser.parse_args(argv)
    frames = load_frames(args, with_labels=False, all_frames=args.all_frames)
    predictor = load_predictor(args)
    try:
        check_submittable(predictor.preset)
    except ValueError as e:
        parser.error(str(e))
    for frame, labels in predict_frames(predictor, frames, args.batch_size, args.num_workers):
        write_submission(args.output, frame, labels, predictor.preset)
    print(f'wrote {len(frames)} predictions under {args.output / "sequences"}')
    if args.zip:
        print(f'wrote {write_bundle(args.output)}')


if __name__ == '__main__':
    main()
