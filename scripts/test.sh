#!/usr/bin/env bash
# Set up (once) and run the test suite: `bash scripts/test.sh` (extra arguments go to pytest).
# `bash scripts/test.sh --fast`: the fast tier (no test marked slow), a few minutes; CI runs all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
args=()
for a in "$@"; do
  if [ "$a" = "--fast" ]; then args+=(-m "not slow"); else args+=("$a"); fi
done
python -m pytest "${args[@]}"
