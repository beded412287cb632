"""Shared fixtures: the embedded real COCO sample, copies of it to break, and paths."""

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
SHARED = REPO.parent / "shared" / "data"


def ann_path(root: Path, split: str) -> Path:
    return root / "annotations" / f"person_keypoints_{split}2017.json"


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A writable copy of the embedded sample, in the COCO layout."""
    dst = tmp_path / "coco"
    shutil.copytree(SAMPLE, dst)
    return dst


def raw_counts(ann: dict, min_v: int = 1) -> dict:
    """Subset counts computed straight from the JSON, independently of the package."""
    lower_idx = range(11, 17)
    full = lower = crowd = 0
    for a in ann["annotations"]:
        if a.get("iscrowd", 0):
            crowd += 1
            continue
        v = [a["keypoints"][3 * j + 2] for j in lower_idx]
        full += any(x > 0 for x in v)
        lower += all(x >= min_v for x in v)
    return {"full": full, "lower60k": lower, "crowd": crowd}
