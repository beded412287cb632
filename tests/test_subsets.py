import numpy as np
import pandas as pd

from squatpose.coco import person_records
from squatpose.config import SubsetsConfig
from squatpose.subsets import make_subsets, mini, subset_path, write_subsets
from squatpose.joints import keypoints_from_table
from tests.conftest import SAMPLE, ann_path, load_json, raw_counts


def test_written_counts_equal_independent_counts_of_the_raw_json(tmp_path):
    counts = write_subsets(SAMPLE, tmp_path / "subsets", tmp_path / "subsets.json", SubsetsConfig())
    assert load_json(tmp_path / "subsets.json") == counts
    for split in ("train", "val"):
        raw = raw_counts(load_json(ann_path(SAMPLE, split)))
        assert counts[split]["full"] == raw["full"]
        assert counts[split]["mini"] == raw["full"]  # smaller than mini_size: all of full
        assert counts[split]["lower60k"] == raw["lower60k"]
        assert counts[split]["crowd_ignored"] == raw["crowd"]
        for subset in ("full", "mini", "lower60k"):
            table = pd.read_parquet(subset_path(tmp_path / "subsets", split, subset))
            assert len(table) == counts[split][subset]
    # the numbers ../shared/README.md states for this sample
    assert (counts["train"]["full"], counts["train"]["lower60k"]) == (53, 25)
    assert (counts["val"]["full"], counts["val"]["lower60k"]) == (51, 22)


def test_lower_with_visible_only():
    records, _ = person_records(ann_path(SAMPLE, "train"), SAMPLE / "train2017")
    strict = make_subsets(records, SubsetsConfig(lower_min_visibility=2))["lower60k"]
    assert len(strict) == raw_counts(load_json(ann_path(SAMPLE, "train")), min_v=2)["lower60k"] == 21
    assert (keypoints_from_table(strict)[:, :, 2] == 2).all()


def test_mini_is_a_seeded_sample_of_full():
    records, _ = person_records(ann_path(SAMPLE, "val"), SAMPLE / "val2017")
    a, b, c = mini(records, 20, seed=0), mini(records, 20, seed=0), mini(records, 20, seed=1)
    assert len(a) == 20 and a["ann_id"].tolist() == b["ann_id"].tolist()
    assert a["ann_id"].tolist() != c["ann_id"].tolist()
    assert set(a["ann_id"]) <= set(records["ann_id"])
    pos = records.reset_index().set_index("ann_id").loc[a["ann_id"], "index"].to_numpy()
    assert np.all(np.diff(pos) > 0)  # kept in table order
