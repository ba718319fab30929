"""Predict a built-in street frame, render it beside its ground truth, and print figures.

    python -m ssc_core.tools.demo --out outputs/demo [--checkpoint semantic_kitti_e25_miou0.1489.ckpt]

By default the built-in model runs (ssc_core/weights/small_synthetic.safetensors: the reduced
``small`` preset trained on synthetic streets, see scripts/train_builtin.sh). With --checkpoint the
frame is rendered for that checkpoint's camera and grid (e.g. the authors' SemanticKITTI model).
The frame is a uint8 image, as a camera delivers it; the demo also prints how many voxels change
under ±1 LSB of pixel noise (the camera path's stability).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import BUILTIN_CHECKPOINT, CheckpointError, load_model
from ..data.sample import sample_frame, street_frame
from ..metrics import SSCMetrics
from ..predictor import Predictor
from ..presets import PRESETS
from ..render import render_scene
from ..training.module import format_scores
from .bench import format_table, hardware, measure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', default=str(BUILTIN_CHECKPOINT),
                        help='weights (default: the built-in model)')
    parser.add_argument('--preset', choices=sorted(PRESETS), help='default: from the checkpoint')
    parser.add_argument('--out', default='outputs/demo', help='output folder')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--seed', type=int, default=3, help='which synthetic street')
    parser.add_argument('--runs', type=int, default=3, help='timed forwards after the prediction')
    parser.add_argument('--noise-draws', type=int, default=2,
                        help='predictions with ±1 LSB pixel noise for the stability figure (0: skip)')
    args = parser.parse_args(argv)

    try:
        model, preset = load_model(args.checkpoint, args.preset)
    except CheckpointError as e:
        sys.exit(f'demo: {e}')
    predictor = Predictor(model, preset, args.device)
    frame = street_frame(preset, args.seed)
    print(f'preset {preset.name}, weights {args.checkpoint}, device {hardware(predictor.device)}')

    start = time.perf_counter()
    prediction = predictor.predict(frame.image, frame.depth, frame.K, frame.cam_from_grid)
    print(f'first prediction (incl. camera geometry): {time.perf_counter() - start:.2f} s')
    metrics = SSCMetrics(preset.model.num_classes)
    metrics.update(torch.from_numpy(prediction.labels[None]), torch.from_numpy(frame.labels[None]))
    print(format_scores(metrics.compute(), preset.class_names,
                        f'this frame ({frame.image.dtype} image, as a camera delivers it) against its '
                        'ground truth:'))
    if args.noise_draws > 0:
        changed = lsb_noise_changes(predictor, frame, prediction.labels, args.noise_draws)
        print(f'stability: ±1 LSB pixel noise changes {100 * changed:.2f} % of voxels '
              f'(mean of {args.noise_draws} draws)')

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / 'labels.npy', prediction.labels)
    height, width = preset.image_shape
    png = render_scene(out / 'prediction.png', {'prediction': prediction.labels,
                                                'ground truth': frame.labels},
                       preset.class_names, preset.model.voxel_size, preset.voxel_origin, frame.image,
                       (frame.K, frame.cam_from_grid, (width, height)),
                       title=f'Symphonies ({preset.name}): {Path(args.checkpoint).name}')
    print(f'wrote {out / "labels.npy"} (uint8 {prediction.labels.shape}) and {png}')
    if args.runs > 0:
        figures = measure(predictor, sample_frame(preset), args.runs, warmup=1)
        row = {'label': predictor.backend.describe(), 'device': str(predictor.device),
               'precision': 'fp32', **figures}
        print(format_table(preset.name, [row], {str(predictor.device): hardware(predictor.device)}))


def lsb_noise_changes(predictor: Predictor, frame, labels: np.ndarray, draws: int, seed: int = 0) -> float:
    """Mean fraction of voxels whose label differs from ``labels`` (X, Y, Z) when every channel of
    the frame's uint8 image moves by -1, 0 or +1 at random (clipped to 0..255)."""
    rng = np.random.default_rng(seed)
    image = frame.image.astype(np.int16)
    changed = []
    for _ in range(draws):
        noisy = np.clip(image + rng.integers(-1, 2, image.shape), 0, 255).astype(np.uint8)
        noisy_labels = predictor.predict(noisy, frame.depth, frame.K, frame.cam_from_grid).labels
        changed.append(float((noisy_labels != labels).mean()))
    return float(np.mean(changed))


if __name__ == '__main__':
    main()
