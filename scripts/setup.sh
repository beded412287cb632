#!/usr/bin/env bash
# Create .venv with the locked versions of everything (requirements.lock) and squatpose itself.
# Idempotent: does nothing when .venv already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
want=$( (cat requirements.lock pyproject.toml .dvc/plots/package-lock.json scripts/plots_template.py; command -v npm || true) \
  | sha256sum | cut -d' ' -f1)
stamp=.venv/.locked
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f .dvc/plots/offline.html ]; then
  exit 0
fi
echo "setting up .venv from requirements.lock (first time: a few minutes, ~6 GB with CUDA torch)"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() {  # quiet, without the warnings some machines' pip.conf causes for every package
  .venv/bin/python -m pip --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
pip install --quiet -r requirements.lock
pip install --quiet --no-deps --no-build-isolation -e .
# the vega libraries for `dvc plots show` pages that work offline (.dvc/plots/package-lock.json)
if command -v npm >/dev/null && npm ci --prefix .dvc/plots --no-audit --no-fund --ignore-scripts --silent; then
  .venv/bin/python scripts/plots_template.py
else
  echo "warning: no npm, or the npm registry out of reach: \`dvc plots show\` pages will load vega from the internet" >&2
  .venv/bin/python scripts/plots_template.py --online
fi
echo "$want" > "$stamp"
