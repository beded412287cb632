#!/usr/bin/env bash
# Set up (once) and run the test suite: `bash scripts/test.sh` (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
python -m pytest "$@"
