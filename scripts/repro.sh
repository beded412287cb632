#!/usr/bin/env bash
# Set up (once) and run the whole pipeline: `bash scripts/repro.sh` (extra arguments go to dvc repro).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
dvc repro "$@"
dvc status
