#!/usr/bin/env bash
# Install (with the test tools), lint, and run the whole test suite.
# The reference data is read from ../shared/reference/symphonies (override: SSC_REFERENCE_DIR).
# ROS 2 tests talk DDS on this host only: discovery is limited to localhost and, where this user
# may create one, the tests run in a private network namespace with only the loopback interface.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
.venv/bin/ruff check --output-format concise .
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
if unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec .venv/bin/python -m pytest -ra --durations=15 "$@"' pytest "$@"
fi
echo "note: cannot create a network namespace here; running with DDS discovery limited to localhost" >&2
exec .venv/bin/python -m pytest -ra --durations=15 "$@"
