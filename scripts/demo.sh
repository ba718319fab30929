#!/usr/bin/env bash
# Install, then run the main job on built-in data: predict the sample frame, render it, benchmark.
# Extra arguments go to the demo, e.g. --checkpoint symphonies_semantic_kitti.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -m ssc_core.tools.demo --out outputs/demo "$@"
