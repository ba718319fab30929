"""Build the semantic map of a sequence: every image predicted, fused at its pose, written out.

    python -m ssc_core.tools.map --checkpoint symphonies.safetensors --data-root /data/kitti \\
        --depth-root /data/depth --sequence 08 [--frames 0:200] --out map.npz map.ply

SemanticKITTI layout with poses.txt and times.txt. Each frame's prediction is integrated where its
camera sees (ssc_core.mapping.SemanticMap; settings below). Outputs by suffix: .npz (the whole map,
reloadable with ssc_core.mapping.load_map) and .ply (the occupied voxels' centres in class colours
and a label property: CloudCompare, MeshLab, Open3D). `render --map map.npz` draws a top view.
"""
import argparse
import sys
import time

from ..evaluation import predict_sequence, sequence_inputs
from ..mapping import SemanticMap, occupied_points, save_map, write_ply
from .common import add_map_arguments, load_predictor, map_settings

SUFFIXES = ('.npz', '.ply')


def frame_range(text: str, count: int) -> range:
    """'A:B' (either side may be empty) → the images A..B-1 of ``count``; ValueError otherwise."""
    try:
        start, stop = (int(v) if v else None for v in text.split(':'))
    except ValueError:
        raise ValueError(f'--frames: expected A:B, got {text!r}') from None
    chosen = range(count)[slice(start, stop)]
    if not len(chosen):
        raise ValueError(f'--frames {text}: no images of the {count}')
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True,
                        help='weights (ours, a training run\'s or the authors\')')
    parser.add_argument('--preset', help='default: from the checkpoint')
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--depth-root', required=True)
    parser.add_argument('--sequence', required=True)
    parser.add_argument('--frames', default=':', help='images A:B of the sequence (default: all)')
    parser.add_argument('--out', nargs='+', required=True, help='map.npz and/or map.ply')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--max-jump', type=float, default=10.0,
                        help='metres between consecutive frames beyond which a frame is refused')
    add_map_arguments(parser)
    args = parser.parse_args(argv)
    wrong = [o for o in args.out if not o.endswith(SUFFIXES)]
    if wrong:
        parser.error(f'--out: {", ".join(wrong)}: expected names ending in {" or ".join(SUFFIXES)}')
    try:
        sequence, = sequence_inputs(args.data_root, args.depth_root, None, 'val', [args.sequence])
        chosen = frame_range(args.frames, len(sequence.frames))
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'map: {e}')
    predictor = load_predictor(args)
    preset = predictor.preset
    semantic_map = SemanticMap(preset.model.voxel_size, preset.class_names, preset.voxel_origin,
                               max_jump=args.max_jump, device=predictor.device, **map_settings(args))
    started = time.perf_counter()
    spent = 0.0
    for i, prediction in predict_sequence(predictor, sequence, chosen):
        tick = time.perf_counter()
        try:
            semantic_map.integrate(prediction.labels, prediction.observed, prediction.world_from_grid,
                                   prediction.stamp, confidence=prediction.confidence)
        except ValueError as e:
            sys.exit(f'map: frame {sequence.frames[i].frame_id}: {e}')
        spent += time.perf_counter() - tick
    occupied = occupied_points(semantic_map)
    for out in args.out:
        if out.endswith('.npz'):
            print(f'wrote {save_map(semantic_map, out)}')
        else:
            print(f'wrote {write_ply(out, *occupied, preset.class_names)}')
    print(f'{len(chosen)} frames in {time.perf_counter() - started:.1f} s (map integration '
          f'{spent / len(chosen) * 1000:.1f} ms per frame); {semantic_map.num_blocks} blocks, '
          f'{semantic_map.nbytes / 2**20:.1f} MiB, {len(occupied[1])} occupied voxels')


if __name__ == '__main__':
    main()
