"""Draw a prediction (and the ground truth beside it) as a PNG a person can read: 3-D voxels in
the benchmark colours, the camera frustum, the camera image and a legend.

    python -m ssc_core.tools.render --prediction outputs/infer/08/000005.npy \\
        --target labels/08/000005_1_1.npy --image .../image_2/000005.png --out frame.png

Predictions are .npy label grids (infer) or benchmark .label files (test). The preset (grid,
classes, camera) is the one whose grid has the prediction's shape (semantic_kitti for
256x256x32, small for 128x128x16) unless --preset names another.

    python -m ssc_core.tools.render --map map.npz --out map.png

draws a semantic map (`ssc_core.tools.map`, the node's save_map) from above: each column in the
class of its highest occupied voxel, darker the lower; empty known columns grey, unknown white.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.label_files import LabelError, downsample_majority, prediction_shape, read_prediction, read_target
from ..mapping import MapError, load_map
from ..presets import PRESETS, Preset, get_preset
from ..render import render_scene, render_top_view


def preset_for_prediction(path: Path) -> Preset:
    """The first preset (in PRESETS order) whose output grid has the prediction's shape."""
    shape = prediction_shape(path)
    for preset in PRESETS.values():
        if preset.model.scene_shape == tuple(shape):
            return preset
    known = ', '.join(f'{p.name} {p.model.scene_shape}' for p in PRESETS.values())
    raise LabelError(f'{path}: grid {tuple(shape)} fits no preset ({known}); pass --preset')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--prediction', type=Path)
    source.add_argument('--map', type=Path, help='a semantic map (.npz) to draw from above')
    parser.add_argument('--target', type=Path, help='ground truth (FRAME_1_1.npy) to show beside it')
    parser.add_argument('--image', type=Path, help='the camera image')
    parser.add_argument('--preset', choices=sorted(PRESETS),
                        help='grid, classes and camera of the prediction (default: by its shape)')
    parser.add_argument('--out', required=True, type=Path)
    args = parser.parse_args(argv)
    if args.map:
        return render_map(args.map, args.out)
    try:
        preset = get_preset(args.preset) if args.preset else preset_for_prediction(args.prediction)
        cfg = preset.model
        panels = {'prediction': read_prediction(args.prediction, cfg.scene_shape, cfg.num_classes)}
        if args.target:
            target = read_target(args.target, (256, 256, 32), cfg.num_classes)
            factor = round(cfg.voxel_size / 0.2)
            panels['ground truth'] = downsample_majority(target, factor)
        image = np.asarray(Image.open(args.image).convert('RGB')) if args.image else None
    except (OSError, ValueError) as e:  # LabelError is a ValueError
        sys.exit(f'render: {e}')
    height, width = cfg.image_shape
    camera = (np.array(preset.cam_K), np.array(preset.cam_from_grid), (width, height))
    render_scene(args.out, panels, preset.class_names, cfg.voxel_size, preset.voxel_origin,
                 image=None if image is None else image[:height, :width], camera=camera,
                 title=f'{args.prediction} ({preset.name})')
    print(f'wrote {args.out}')


def render_map(path: Path, out: Path) -> None:
    try:
        semantic_map = load_map(path)
    except MapError as e:
        sys.exit(f'render: {e}')
    voxels, labels = semantic_map.voxels()
    title = (f'{path}: {semantic_map.frames} frames, {semantic_map.num_blocks} blocks, '
             f'{semantic_map.voxel_size:g} m voxels')
    path = render_top_view(out, voxels, labels, semantic_map.class_names, semantic_map.voxel_size, title)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
