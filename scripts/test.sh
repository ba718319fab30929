#!/usr/bin/env bash
# Install (with the test tools), lint, and run the whole test suite.
# The reference data is read from ../shared/reference/symphonies (override: SSC_REFERENCE_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
.venv/bin/ruff check --output-format concise .
# Tests that start ROS keep DDS discovery on this host.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
.venv/bin/python -m pytest -ra "$@"
