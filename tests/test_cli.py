import subprocess
import sys
from pathlib import Path

from tests.conftest import SAMPLE, ann_path


def squatpose(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "squatpose.cli", *args], capture_output=True, text=True)


def test_installed_command():
    exe = Path(sys.executable).parent / "squatpose"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("usage: squatpose")


def test_help_and_version():
    out = squatpose("--help")
    assert out.returncode == 0 and "validate" in out.stdout and "dvc repro" in out.stdout
    assert squatpose("--version").stdout.startswith("squatpose 0.")


def test_validate_reports_the_counts_of_a_real_file():
    out = squatpose("validate", str(ann_path(SAMPLE, "val")))
    assert out.returncode == 0, out.stderr
    assert "51 persons with lower-body joints (22 with all six labeled)" in out.stdout
    assert f"images from {SAMPLE / 'val2017'}" in out.stdout


def test_validate_bad_file_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "person_keypoints_val2017.json"
    bad.write_text("[1, 2]")
    out = squatpose("validate", str(bad))
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: {bad}: not COCO keypoints: top level is not an object"
