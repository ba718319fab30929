#!/usr/bin/env bash
# Create .venv (unless it exists) and install ssc_ros with its pinned dependencies.
#   scripts/setup.sh        runtime dependencies
#   scripts/setup.sh --dev  plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
requirements=requirements.txt
[ "${1:-}" = "--dev" ] && requirements=requirements-dev.txt
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements" 2>&1 \
  | grep -v "^WARNING: Location 'file:" || true
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 \
  | grep -v "^WARNING: Location 'file:" || true
.venv/bin/python -c "import torch, timm, ssc_core; print('ssc_ros environment ready: torch', torch.__version__, '| timm', timm.__version__)"
