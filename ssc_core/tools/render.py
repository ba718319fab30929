"""Draw a prediction (and the ground truth beside it) as a PNG a person can read: 3-D voxels in
the benchmark colours, the camera frustum, the camera image and a legend.

    python -m ssc_core.tools.render --prediction outputs/infer/08/000005.npy \\
        --target labels/08/000005_1_1.npy --image .../image_2/000005.png --out frame.png

Predictions are .npy label grids (infer) or benchmark .label files (test).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.labels import LabelError, downsample_majority, read_target, voxel_lut
from ..labels import SEMANTIC_KITTI_LEARNING_MAP
from ..presets import PRESETS, get_preset
from ..render import render_scene


def read_grid(path: Path, shape, num_classes: int) -> np.ndarray:
    """A label grid from .npy (class ids) or a benchmark .label (raw ids, uint16)."""
    if path.suffix == '.label':
        raw = np.fromfile(path, np.uint16)
        if raw.size != np.prod(shape):
            raise LabelError(f'{path}: {raw.size} voxels, expected {int(np.prod(shape))}')
        ids = voxel_lut(SEMANTIC_KITTI_LEARNING_MAP)[raw]
        if (ids < 0).any():
            raise LabelError(f'{path}: raw ids {np.unique(raw[ids < 0])[:10].tolist()} not in the map')
        return ids.astype(np.uint8).reshape(shape)
    return read_target(path, shape, num_classes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--prediction', required=True, type=Path)
    parser.add_argument('--target', type=Path, help='ground truth (FRAME_1_1.npy) to show beside it')
    parser.add_argument('--image', type=Path, help='the camera image')
    parser.add_argument('--preset', default='semantic_kitti', choices=sorted(PRESETS),
                        help='grid, classes and camera of the prediction')
    parser.add_argument('--out', required=True, type=Path)
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    cfg = preset.model
    try:
        panels = {'prediction': read_grid(args.prediction, cfg.scene_shape, cfg.num_classes)}
        if args.target:
            target = read_target(args.target, (256, 256, 32), cfg.num_classes)
            factor = round(cfg.voxel_size / 0.2)
            panels['ground truth'] = downsample_majority(target, factor)
        image = np.asarray(Image.open(args.image).convert('RGB')) if args.image else None
    except (LabelError, OSError) as e:
        sys.exit(f'render: {e}')
    height, width = cfg.image_shape
    camera = (np.array(preset.cam_K), np.array(preset.cam_from_grid), (width, height))
    render_scene(args.out, panels, preset.class_names, cfg.voxel_size, preset.voxel_origin,
                 image=None if image is None else image[:height, :width], camera=camera,
                 title=f'{args.prediction} ({preset.name})')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
