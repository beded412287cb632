"""Hostile and careless input, property style: random corruptions of the real sample annotation
files either stop with one line naming the file, or give person records whose every number is
finite and sane. Never a traceback, never a NaN that reaches training."""

import json
import math
import random
import subprocess
import sys

import numpy as np
import pytest

from squatpose.coco import person_records
from squatpose.errors import SquatposeError
from tests.conftest import SAMPLE, ann_path

VAL = ann_path(SAMPLE, "val")
ODD_VALUES = [float("nan"), float("inf"), -float("inf"), 1e39, -1e39, -5, 0, 0.5, "12", None, [], {}, True, 2**63]


def _paths(node, prefix=()):
    """Every (path, value) of a JSON tree, leaves and containers."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def corrupt(text: str, rng: random.Random) -> str:
    """One random corruption of a COCO JSON text: cut off, a value replaced by an odd one, a key
    removed, or a number made non-finite."""
    kind = rng.choice(["truncate", "replace", "remove", "replace", "replace"])
    if kind == "truncate":
        return text[: rng.randrange(len(text))]
    data = json.loads(text)
    # annotations and images the loader reads: the first few, and the person category
    spots = [(p, v) for p, v in _paths(data) if p and p[0] in ("images", "annotations", "categories")
             and (len(p) < 2 or p[1] < 6)]
    path, _ = rng.choice(spots)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if kind == "remove" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = rng.choice(ODD_VALUES)
    return json.dumps(data)  # NaN and Infinity are written as JSON's non-standard literals, as some tools do


@pytest.mark.parametrize("seed", range(60))
def test_corrupted_annotations_are_refused_in_one_line_or_give_finite_records(tmp_path, seed):
    path = tmp_path / f"corrupt-{seed}.json"
    path.write_text(corrupt(VAL.read_text(), random.Random(seed)))
    try:
        table, report = person_records(path, SAMPLE / "val2017")
    except SquatposeError as e:
        text = str(e)
        assert text.startswith(str(path)) and "\n" not in text, text
        return
    numbers = table.select_dtypes("number")
    assert np.isfinite(numbers.to_numpy(np.float64)).all()
    assert (numbers.drop(columns=["ann_id", "image_id", "area"]).abs() <= 1e6).all().all()
    assert (table["bbox_w"] > 0).all() and (table["bbox_h"] > 0).all()
    assert report.persons == len(table)


def test_every_kind_of_corruption_was_tried():
    """The property test above is only as good as its corruptions: it must hit both outcomes."""
    refused = accepted = 0
    for seed in range(60):
        text = corrupt(VAL.read_text(), random.Random(seed))
        try:
            data = json.loads(text)
        except ValueError:
            refused += 1
            continue
        has_odd = any(isinstance(v, float) and not math.isfinite(v) for _, v in _paths(data))
        refused += has_odd
        accepted += not has_odd
    assert refused >= 15 and accepted >= 5


@pytest.mark.slow
@pytest.mark.parametrize("value, message", [
    (float("nan"), "bbox is not 4 finite numbers"),
    (float("inf"), "bbox is not 4 finite numbers"),
])
def test_validate_command_refuses_non_finite_numbers(tmp_path, value, message):
    data = json.loads(VAL.read_text())
    data["annotations"][0]["bbox"][2] = value
    path = tmp_path / "person_keypoints_val2017.json"
    path.write_text(json.dumps(data))
    p = subprocess.run([sys.executable, "-m", "squatpose.cli", "validate", str(path), "--images",
                        str(SAMPLE / "val2017")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0
    assert f"{path}: not COCO keypoints: annotation {data['annotations'][0]['id']}: {message}" in p.stderr
