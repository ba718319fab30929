#!/usr/bin/env bash
# Create .venv (unless it exists) and install ssc_ros with its pinned dependencies.
#   scripts/setup.sh        runtime dependencies
#   scripts/setup.sh --dev  plus the test tools: colcon (PyPI) and the upstream ROS 2 launch system,
#                           ros2 command line and sensor_msgs_py (wheels in ../shared/ros2-tools)
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
if [ "$requirements" = requirements-dev.txt ]; then
  ros2_tools=../shared/ros2-tools
  if [ ! -f "$ros2_tools/install.sh" ]; then
    echo "scripts/setup.sh --dev: $ros2_tools/install.sh not found: the ROS 2 launch/CLI wheels are expected in" \
         "../shared/ros2-tools beside this repository" >&2
    exit 1
  fi
  out=$(bash "$ros2_tools/install.sh" .venv/bin/python 2>&1) || { echo "$out" >&2; exit 1; }
  echo "$out" | grep -v "^WARNING: Location 'file:" || true
fi
.venv/bin/python -c "import torch, timm, ssc_core; print('ssc_ros environment ready: torch', torch.__version__, '| timm', timm.__version__)"
