"""Runs outside DVC (the learning benchmark, the shipped model) go through the pipeline's own
steps on real LSPET images: import-lsp, the COCO sample added, subsets, shards, params."""

import json

import pandas as pd
import pytest

from squatpose.coco import annotation_file
from squatpose.dataset import ShardDataset
from squatpose.experiments import COCO_ID_OFFSET, prepare, run_params, shards_for
from squatpose.subsets import subset_path
from tests.conftest import SAMPLE, SHARED, ann_path, load_json

LSPET = SHARED / "lspet"
pytestmark = pytest.mark.skipif(not (LSPET / "joints.mat").is_file(), reason="../shared/data/lspet not present")


def test_prepare_and_shards_of_lspet_with_the_coco_sample(tmp_path):
    images = prepare(tmp_path, LSPET, limit=40, with_coco_sample=True)
    train = json.loads(annotation_file(tmp_path / "coco", "train").read_text())
    val = json.loads(annotation_file(tmp_path / "coco", "val").read_text())
    sample = load_json(ann_path(SAMPLE, "train"))
    lspet_train = [a for a in train["annotations"] if a["id"] < COCO_ID_OFFSET]
    assert len(lspet_train) == 40 and len(val["images"]) == 50  # images 1-40 and 7001-7050
    assert len(train["annotations"]) == 40 + len(sample["annotations"])  # and every sample person, ids moved
    assert all((images / img["file_name"]).is_file() for img in train["images"] + val["images"])
    params = run_params(tmp_path, images, 96, 128, {"r": {"model": "dilated", "subset": "full"}})
    assert params.crop.width == 96 and params.data.source == "coco_dir" and list(params.rows) == ["r"]
    shards = shards_for(tmp_path, params)
    for split in ("train", "val"):
        table = pd.read_parquet(subset_path(tmp_path / "subsets", split, "full"))
        ds = ShardDataset.from_subset(shards / split, subset_path(tmp_path / "subsets", split, "full"))
        assert len(ds) == len(table) > 0 and ds.missing == 0
        assert ds[0]["image"].shape == (128, 96, 3)
    assert prepare(tmp_path, LSPET, limit=40, with_coco_sample=True) == images  # done: skipped
