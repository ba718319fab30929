#!/usr/bin/env bash
# Create .venv (unless it exists) and install ssc_ros with its pinned dependencies.
#   scripts/setup.sh        runtime dependencies
#   scripts/setup.sh --dev  plus the test tools: colcon (PyPI) and the upstream ROS 2 launch system,
#                           ros2 command line and sensor_msgs_py (wheels in ../shared/ros2-tools)
#   scripts/setup.sh --gpu  (also with --dev) onnxruntime-gpu in place of onnxruntime: ONNX Runtime's
#                           CUDA (and, with TensorRT 10, TensorRT) providers; see requirements-gpu.txt
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
requirements=requirements.txt
gpu=
for flag in "$@"; do
  case $flag in
    --dev) requirements=requirements-dev.txt ;;
    --gpu) gpu=1 ;;
    *) echo "scripts/setup.sh: unknown option $flag (--dev, --gpu)" >&2; exit 2 ;;
  esac
done
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
if [ -n "$gpu" ]; then
  .venv/bin/python -m pip uninstall --quiet -y onnxruntime
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
    -r requirements-gpu.txt 2>&1 | grep -v "^WARNING: Location 'file:" || true
  .venv/bin/python -c "import torch, onnxruntime; print('onnxruntime-gpu', onnxruntime.__version__, \
'providers:', ', '.join(onnxruntime.get_available_providers()))"
fi
.venv/bin/python -c "import torch, timm, ssc_core; print('ssc_ros environment ready: torch', torch.__version__, '| timm', timm.__version__)"
