"""Shared fixtures: the embedded real COCO sample, copies of it to break, and paths."""

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
SHARED = REPO.parent / "shared" / "data"


def ann_path(root: Path, split: str) -> Path:
    return root / "annotations" / f"person_keypoints_{split}2017.json"


def sample_shards(root: Path) -> Path:
    """The embedded sample's subset tables (`root`/subsets) and its train and val persons as shards
    at the pipeline's crop, 192x256 (`root`/shards/{train,val}, returned), as the pipeline lays them out."""
    import pandas as pd

    from squatpose.config import CropConfig, SubsetsConfig
    from squatpose.shards import write_shards
    from squatpose.subsets import subset_path, write_subsets

    write_subsets(SAMPLE, root / "subsets", root / "subsets.json", SubsetsConfig())
    for split in ("train", "val"):
        table = pd.read_parquet(subset_path(root / "subsets", split, "full"))
        write_shards(table, root / "shards" / split, CropConfig(), 64, 1, progress=False)
    return root / "shards"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


PENN = REPO / "tests" / "data" / "penn_squat.npz"


def penn_clips() -> dict:
    """Real squat tracks (Penn Action, tests/data/penn_squat.*): clip id -> dict of xy (T, 6, 2)
    with NaN where the joint is not visible, vis (T, 6) bool, view ("side" | "front"), and the
    hand count of tests/data/penn_squat.json (reps, partial_reps, bottom_frames)."""
    data = np.load(PENN)
    info = load_json(PENN.with_suffix(".json"))
    clips = {}
    for c in data["clip"]:
        c = str(c)
        vis = data[f"vis_{c}"].astype(bool)
        xy = data[f"xy_{c}"].astype(np.float64)
        xy[~vis] = np.nan
        meta = info["clips"][c]
        clips[c] = {**meta, "xy": xy, "vis": vis, "view": "front" if meta["view"] in ("front", "back") else "side",
                    "penn_view": meta["view"]}
    return clips


def penn_sequence(ids: list[str]) -> tuple[np.ndarray, list[int]]:
    """Real clips one after another, each shifted so its ankles stand where the first clip's did
    and scaled to the first clip's leg length: one person doing several reps. Returns the track
    and the hand-counted bottom frame of each rep in it."""
    clips = penn_clips()
    first = clips[ids[0]]["xy"]
    anchor = np.nanmedian(first[:, 4:6], axis=(0, 1))
    leg = np.nanmedian(np.linalg.norm(first[:, 0:2] - first[:, 4:6], axis=-1))
    parts, bottoms, offset = [], [], 0
    for c in ids:
        xy = clips[c]["xy"]
        scale = leg / np.nanmedian(np.linalg.norm(xy[:, 0:2] - xy[:, 4:6], axis=-1))
        xy = (xy - np.nanmedian(xy[:, 4:6], axis=(0, 1))) * scale + anchor
        parts.append(xy)
        bottoms += [offset + b for b in clips[c]["bottom_frames"]]
        offset += len(xy)
    return np.concatenate(parts), bottoms


@pytest.fixture(autouse=True)
def onnx_cache_in_tmp(tmp_path_factory, monkeypatch):
    """ONNX exports made by tests (and the commands they run) go to a temp dir, not ~/.cache."""
    monkeypatch.setenv("SQUATPOSE_CACHE", str(tmp_path_factory.getbasetemp() / "squatpose-cache"))


def claiming_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0-2) saying `width` x `height`: a small file whose
    header claims a huge image, as a decompression bomb does."""
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        at = jpeg.find(marker)
        if at > 0:
            return jpeg[:at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 9:]
    raise ValueError("no JPEG frame header")


def at_bottom(view: str = "side", legs: tuple[str, ...] = ("right",), confidence: dict | None = None,
              **values: tuple[float | None, float | None]):
    """Bottom-of-rep measures: `values` such as right_thigh_angle=(12.0, 2.0) (value, +-); the rest unknown."""
    from squatpose.squat.reps import MEASURES, AtBottom, Measured

    measured = {name: {side: Measured(*values.get(f"{side}_{name}", (None, None))) for side in ("left", "right")}
                for name in MEASURES}
    return AtBottom(view, list(legs), **measured, confidence=confidence or {})
