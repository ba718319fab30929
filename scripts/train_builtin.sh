#!/usr/bin/env bash
# Reproduce the built-in model (ssc_core/weights/small_synthetic.safetensors): synthetic streets in
# the SemanticKITTI layout (uint8 PNGs, unobserved voxels marked invalid), the reduced `small` preset,
# trained from scratch on the CPU with the authors' flips plus data=synthetic's photometric changes
# (exposure, sensor noise, JPEG) so that camera noise does not move its output.
#   scripts/train_builtin.sh [OUT]      (OUT defaults to outputs/builtin; ~40 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-outputs/builtin}
py=.venv/bin/python
$py -m ssc_core.tools.make_synthetic "$out/data" --sequences 00 01 02 08 --frames 60 \
    --image-size 320 96 --label-every 1 --seed 7
$py -m ssc_core.tools.prepare_labels --data-root "$out/data" --label-root "$out/data/labels"
$py -m ssc_core.tools.train preset=small data=synthetic data.data_root="$out/data" \
    'data.splits={train: ["00", "01", "02"], val: ["08"]}' output_dir="$out/run" \
    module.lr=1e-3 module.eps=1e-8 module.encoder_lr_mult=1.0 'module.milestones=[3]' \
    trainer.max_epochs=4 seed=7
$py -m ssc_core.tools.convert "$out/run/checkpoints/best.ckpt" ssc_core/weights/small_synthetic.safetensors \
    --half
