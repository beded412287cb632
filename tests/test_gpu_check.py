"""benchmarks/gpu_check.py: its dry run takes every code path of the GPU check on the CPU, and its
correctness checks pass there; without a GPU it refuses to run the real check in one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from squatpose.models import ARCHITECTURES
from tests.conftest import REPO, sample_shards

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
CHECKS = {"bf16", "channels_last", "ddp", "resume", "resume_scaler", "imports"}


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO / "src"), **env})


@pytest.mark.slow
def test_dry_run_exercises_every_path(tmp_path: Path):
    out = tmp_path / "gpu.json"
    proc = run_script("--dry-run", "--shards", str(sample_shards(tmp_path)), "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ARCHITECTURES:
        assert name in proc.stdout
    rows = json.loads(out.read_text())["rows"]

    checks = {r["check"]: r for r in rows if "check" in r}
    assert set(checks) == CHECKS
    for check, row in checks.items():
        assert row["status"] == "ok", (check, row["result"])

    measured = [r for r in rows if r["section"] in ("throughput", "loader") and r["status"] == "ok"]
    for row in measured:
        rate = row["samples_per_s"]
        assert isinstance(rate, float) and rate > 0, row
    assert {r["arch"] for r in measured if r["section"] == "throughput"} == set(ARCHITECTURES)
    assert any(r.get("compiled") for r in measured)  # one compiled model, with the cheap backend
    assert {r["workers"] for r in measured if r["section"] == "loader"} == {0, 1}
    assert all(r["status"] in ("ok", "skipped (dry run)") for r in rows if r["section"] == "throughput")
    assert [r["section"] for r in rows].count("target") == 2


def test_without_a_gpu_it_says_so_in_one_line():
    proc = run_script(CUDA_VISIBLE_DEVICES="")
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "--dry-run" in proc.stderr, proc.stderr
