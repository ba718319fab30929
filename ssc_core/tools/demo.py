"""Predict the built-in sample frame, render it, and print benchmark figures.

    python -m ssc_core.tools.demo --out outputs/demo [--checkpoint symphonies.safetensors]

Without --checkpoint the network has untrained (seeded random) weights: the picture shows the
pipeline working end to end, not a meaningful scene.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CheckpointError, load_model
from ..data.sample import sample_frame
from ..predictor import Predictor
from ..presets import PRESETS, get_preset
from ..render import render_prediction
from .bench import format_table, hardware, measure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', help='weights (ours .safetensors or the authors\' .ckpt)')
    parser.add_argument('--preset', default='semantic_kitti', choices=sorted(PRESETS))
    parser.add_argument('--out', default='outputs/demo', help='output folder')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--runs', type=int, default=2, help='timed forwards after the prediction')
    args = parser.parse_args(argv)

    if args.checkpoint:
        try:
            model, preset = load_model(args.checkpoint, args.preset)
        except CheckpointError as e:
            sys.exit(f'ssc_demo: {e}')
        source = args.checkpoint
    else:
        preset = get_preset(args.preset)
        torch.manual_seed(0)
        model = preset.model.build()
        source = 'untrained weights (no --checkpoint given)'
    predictor = Predictor(model, preset, args.device)
    frame = sample_frame(preset)
    print(f'preset {preset.name}, weights: {source}, device {hardware(predictor.device)}')

    start = time.perf_counter()
    prediction = predictor.predict(frame.image, frame.depth, frame.K, frame.cam_from_grid)
    print(f'first prediction (incl. geometry): {time.perf_counter() - start:.2f} s')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / 'labels.npy', prediction.labels)
    png = render_prediction(out / 'prediction.png', prediction.labels, preset.class_names,
                            frame.image, prediction.fov_mask,
                            title=f'Symphonies {preset.name}: {source}')
    counts = np.bincount(prediction.labels.ravel(), minlength=len(preset.class_names))
    print('voxels per class: ' + ', '.join(
        f'{name} {n}' for name, n in zip(preset.class_names, counts, strict=True) if n))
    print(f'wrote {out / "labels.npy"} (uint8 {prediction.labels.shape}) and {png}')
    if args.runs > 0:
        figures = measure(predictor, frame, args.runs, warmup=0)
        row = {'backend': 'torch', 'device': str(predictor.device), 'precision': 'fp32', **figures}
        print(format_table(preset.name, [row], {str(predictor.device): hardware(predictor.device)}))


if __name__ == '__main__':
    main()
