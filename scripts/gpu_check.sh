#!/usr/bin/env bash
# The GPU checks as one run on a CUDA machine that already has torch, timm and safetensors
# (figures go to the README's "On a GPU" table):
#   scripts/gpu_check.sh [OUT]        (OUT defaults to outputs/gpu; ~8 min on an H100/H200)
# 1. the CUDA tests (test/test_cuda.py: agreement with the CPU, batches, no depth, fp16/bf16);
# 2. the bench on CUDA at full size (SemanticKITTI preset): authors' layers fp32, ours fp32/fp16/bf16;
# 3. torch.compile fp16 on CUDA; 4. a torch.profiler table of one fp16 frame (where time goes).
# Each step has its own time limit, so a slow step leaves the others' figures.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-outputs/gpu}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
step() { local limit=$1 name=$2; shift 2; echo "== $name"; timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"; }

step 30 versions bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; \
  $py -c 'import torch, timm; print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, \"timm\", timm.__version__)'"
step 120 tests $py -m pytest -q -rA -p no:cacheprovider test/test_cuda.py
step 150 bench $py -m ssc_core.tools.bench --preset semantic_kitti --device cuda --runs 30 --warmup 5
step 170 bench_compile $py -m ssc_core.tools.bench --preset semantic_kitti --device cuda --precision fp16 \
  --compile --runs 30 --warmup 5
step 50 profile $py - <<'EOF'
import torch
from torch.profiler import ProfilerActivity, profile

from ssc_core.data.sample import sample_frame
from ssc_core.predictor import Predictor
from ssc_core.presets import get_preset

preset = get_preset('semantic_kitti')
torch.manual_seed(0)
predictor = Predictor(preset.model.build(), preset, 'cuda', 'fp16')
frame = sample_frame(preset)
inputs = predictor.prepare([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])
for _ in range(3):
    predictor.labels(inputs)
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    predictor.labels(inputs)
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by='cuda_time_total', row_limit=30, max_name_column_width=60))
EOF
