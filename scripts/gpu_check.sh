#!/usr/bin/env bash
# The GPU checks and measurements on a CUDA machine with torch, timm, safetensors, opencv, onnx and
# onnxscript (onnxruntime-gpu for the onnx step: scripts/setup.sh --gpu), full-size SemanticKITTI
# preset, untrained weights; Python: $PYTHON, else .venv/bin/python where it exists, else python3:
#   scripts/gpu_check.sh [OUT [STEP ...]]      OUT: $OUT, else outputs/gpu; steps: all but autotune
# Every step writes its own files under OUT as it goes (its whole output in STEP.log, the bench's
# rows in STEP.json after each row) and has its own time limit, so a slow or failing step leaves
# the others' results; summary.txt gets one line per step (exit status 124 = time limit).
#   versions  GPU, driver, torch/CUDA, onnxruntime providers, TensorRT              (~10 s)
#   tests     test/test_cuda.py: CPU agreement, no host sync, CUDA-graph backend    (~1 min)
#   bench     authors' layers fp32, torch and torch_cudagraph fp32/fp16, 30 frames  (~2 min)
#   profile   per-kernel tables of one fp16 frame, eager and as a CUDA graph        (~1 min)
#   compile   torch.compile fp16: default and reduce-overhead (~1 min to compile each) (~4 min)
#   onnx      export (static shapes), onnxruntime TensorRT fp32/fp16 and CUDA        (~5 min, TensorRT builds)
#   map       semantic map integration and crop on the GPU (torch kernels), 300 frames (~1 min)
#   autotune  torch.compile max-autotune-no-cudagraphs fp16 (only when named)      (~15 min)
# A machine that limits one command to 10 minutes runs it in parts, e.g.
#   scripts/gpu_check.sh "$OUT" versions tests bench profile; scripts/gpu_check.sh "$OUT" compile; ... onnx
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-outputs/gpu}}
shift $(($# > 0 ? 1 : 0))
steps=${*:-versions tests bench profile compile onnx map}
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-$([ -x .venv/bin/python ] && echo "$PWD/.venv/bin/python" || echo python3)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} py out work

step() {  # step LIMIT NAME COMMAND: NAME.log, a summary line, the log's tail on the console
  local limit=$1 name=$2 start=$SECONDS rc
  echo "== $name (at most ${limit} s)"
  timeout --kill-after=15 "$limit" bash -c "$3" > "$out/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc after $((SECONDS - start)) s ($(date -u +%FT%TZ))" | tee -a "$out/summary.txt"
  tail -n 30 "$out/$name.log"
}

bench() { "$py" -m ssc_core.tools.bench --preset semantic_kitti --device cuda --runs 30 --warmup 5 "$@"; }

versions() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$py" - <<'EOF'
import importlib
import torch
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version(),
      'GPU', torch.cuda.get_device_name() if torch.cuda.is_available() else None)
for name in ('timm', 'onnx', 'onnxruntime', 'tensorrt'):
    try:
        module = importlib.import_module(name)
        print(name, module.__version__)
    except ImportError as e:
        print(name, 'not installed:', e)
try:
    import onnxruntime
    print('onnxruntime providers', onnxruntime.get_available_providers())
except ImportError:
    pass
EOF
}

onnx() {
  if ! "$py" -c "import onnxruntime, sys; sys.exit('CUDAExecutionProvider' not in onnxruntime.get_available_providers())"; then
    echo "no onnxruntime with the CUDA provider here (scripts/setup.sh --gpu installs onnxruntime-gpu): not measured"
    return 0
  fi
  "$py" -c "
import torch
from ssc_core.checkpoint import save_checkpoint
from ssc_core.presets import get_preset
torch.manual_seed(0)
preset = get_preset('semantic_kitti')
save_checkpoint(preset.model.build(), preset, '$work/untrained.safetensors')" || return 1
  "$py" -m ssc_core.tools.export --checkpoint "$work/untrained.safetensors" --output "$work/model.onnx" || return 1
  "$py" scripts/gpu_measure.py ort-cuda "$work/model.onnx" "$out"
  bench --checkpoint "$work/untrained.safetensors" --precision fp32 --onnx "$work/model.onnx" \
    --json "$out/onnx.json"
}
export -f bench versions onnx

if [ "$steps" != versions ] && ! "$py" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  [[ " $steps " == *" versions "* ]] && step 60 versions versions
  echo "no CUDA GPU here (torch.cuda.is_available() is False): nothing to measure" | tee -a "$out/summary.txt"
  exit 1
fi

for name in $steps; do
  case $name in
    versions) step 60 versions versions ;;
    tests) step 240 tests '"$py" -m pytest -q -rA -p no:cacheprovider test/test_cuda.py --junitxml="$out/tests.xml"' ;;
    bench) step 300 bench 'bench --precision fp32,fp16 --json "$out/bench.json"' ;;
    profile) step 180 profile '"$py" scripts/gpu_measure.py profile "$out"' ;;
    compile) step 420 compile 'bench --precision fp16 --compile --compile-modes default,reduce-overhead \
               --json "$out/compile.json"' ;;
    onnx) step 540 onnx onnx ;;
    map) step 240 map '"$py" -m ssc_core.tools.bench_map --frames 300 --device cuda --kernels torch' ;;
    autotune) step 1200 autotune 'bench --precision fp16 --compile --compile-modes max-autotune-no-cudagraphs \
                --json "$out/autotune.json"' ;;
    *) echo "unknown step $name (versions tests bench profile compile onnx map autotune)" >&2; exit 2 ;;
  esac
done
