#!/usr/bin/env bash
# Create .venv with the locked versions of everything (requirements.lock) and squatpose itself.
# Idempotent: does nothing when .venv already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
stamp=.venv/.locked
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv from requirements.lock (first time: a few minutes, ~6 GB with CUDA torch)"
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
