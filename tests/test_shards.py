import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch

from squatpose import joints
from squatpose.codec import HeatmapCodec
from squatpose.coco import person_records
from squatpose.config import CropConfig, HeatmapConfig
from squatpose.errors import ShardError
from squatpose.geometry import apply_affine
from squatpose.imaging import MEAN, STD, read_image
from squatpose.shards import ShardDataset, write_shards
from squatpose.subsets import lower
from tests.conftest import REPO, SAMPLE, ann_path

CROP, HEATMAP = CropConfig(), HeatmapConfig()


@pytest.fixture(scope="module")
def val_table() -> pd.DataFrame:
    return person_records(ann_path(SAMPLE, "val"), SAMPLE / "val2017")[0]


@pytest.fixture(scope="module")
def val_shards(tmp_path_factory, val_table):
    out = tmp_path_factory.mktemp("shards") / "val"
    index = write_shards(val_table, out, CROP, HEATMAP, shard_size=16, workers=2, progress=False)
    return out, index


def test_index_and_shard_layout(val_shards, val_table):
    out, index = val_shards
    assert index == json.loads((out / "index.json").read_text())
    assert index["samples"] == index["persons"] == len(val_table) == 51
    assert [s["samples"] for s in index["shards"]] == [16, 16, 16, 3]
    assert sorted(p.name for p in out.iterdir()) == ["index.json"] + [f"shard-{k:05d}" for k in range(4)]


def test_dataset_yields_what_the_jpeg_path_gives(val_shards, val_table):
    out, _ = val_shards
    ds = ShardDataset(out)
    assert len(ds) == 51 and ds.ann_ids.tolist() == val_table["ann_id"].tolist()
    codec = HeatmapCodec()
    kp_img = joints.keypoints_from_table(val_table)
    partial = int(np.flatnonzero((kp_img[:, :, 2] == 0).any(axis=1))[0])  # has unlabeled joints
    for i in (0, 17, 50, partial):
        item = ds[i]
        assert item["image"].shape == (3, 256, 192) and item["image"].dtype == torch.float32
        assert item["target"].shape == (6, 64, 48) and item["target_weight"].shape == (6,)
        # the image is the stored crop, normalised with ImageNet statistics
        crop = np.array(ds.array("images", i))
        expect = (torch.from_numpy(crop).permute(2, 0, 1).float() / 255 - torch.tensor(MEAN)[:, None, None]) \
            / torch.tensor(STD)[:, None, None]
        torch.testing.assert_close(item["image"], expect)
        # the target decodes to the keypoint, which maps back to the annotation in image pixels
        w = item["target_weight"].numpy() > 0
        np.testing.assert_array_equal(w, kp_img[i, :, 2] > 0)
        dec, _ = codec.decode(item["target"][None].numpy())
        inv = np.array(ds.array("crop_to_image", i))  # inv[0, 0]: image pixels per crop pixel
        back = apply_affine(inv[None], dec)[0]
        assert np.all(np.abs(back[w] - kp_img[i, w, :2]) <= codec.stride / 4 * inv[0, 0] + 1e-3)
        assert float(item["target"][torch.from_numpy(~w)].abs().sum()) == 0
    # the stored crop's pixels come from the real JPEG
    row = val_table.iloc[17]
    image = read_image(row["image_path"])
    inv = np.array(ds.array("crop_to_image", 17))
    x, y = apply_affine(inv[None], np.array([[[96.0, 128.0]]]))[0, 0]
    assert np.abs(np.array(ds.array("images", 17))[128, 96].astype(int)
                  - image[int(round(y)), int(round(x))].astype(int)).max() < 40


def test_dataset_selects_a_subset_in_its_order(val_shards, val_table):
    out, _ = val_shards
    sub = lower(val_table)
    ds = ShardDataset(out, sub["ann_id"].to_numpy()[::-1])
    assert len(ds) == len(sub) == 22 and ds.missing == 0
    assert ds.ann_ids.tolist() == sub["ann_id"].tolist()[::-1]
    ds_missing = ShardDataset(out, np.array([sub["ann_id"].iloc[0], -1]))
    assert len(ds_missing) == 1 and ds_missing.missing == 1
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)))
    assert batch["image"].shape == (8, 3, 256, 192) and batch["target"].shape == (8, 6, 64, 48)


def test_rerun_keeps_matching_shards_and_rebuilds_on_new_settings(tmp_path, val_table):
    out = tmp_path / "s"
    write_shards(val_table, out, CROP, HEATMAP, shard_size=32, workers=1, progress=False)
    before = {p.name: p.stat().st_ino for p in out.glob("shard-*")}
    write_shards(val_table, out, CROP, HEATMAP, shard_size=32, workers=1, progress=False)
    assert {p.name: p.stat().st_ino for p in out.glob("shard-*")} == before
    write_shards(val_table, out, CROP, HeatmapConfig(sigma=3.0), shard_size=32, workers=1, progress=False)
    after = {p.name: p.stat().st_ino for p in out.glob("shard-*")}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)
    assert json.loads((out / "index.json").read_text())["heatmap"]["sigma"] == 3.0


def test_killed_run_resumes_and_ends_equal_to_an_uninterrupted_one(tmp_path, val_table):
    table_path = tmp_path / "val.parquet"
    val_table.to_parquet(table_path)
    out = tmp_path / "resumed"
    driver = textwrap.dedent(f"""
        import time, pandas as pd, squatpose.shards as s
        from squatpose.config import CropConfig, HeatmapConfig
        build = s._build_shard
        def slow(task):
            result = build(task)
            time.sleep(0.4)  # room for the test to kill us between shards
            return result
        s._build_shard = slow
        s.write_shards(pd.read_parquet({str(table_path)!r}), {str(out)!r}, CropConfig(),
                       HeatmapConfig(), shard_size=8, workers=1, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", driver], cwd=REPO)
    deadline = time.time() + 60
    while not (out / "shard-00001" / "meta.json").exists():
        assert time.time() < deadline and proc.poll() is None, "driver ended before two shards"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in out.glob("shard-*"))
    assert 2 <= len(done) < 7 and not (out / "index.json").exists()
    with pytest.raises(ShardError, match="no index"):
        ShardDataset(out)
    kept = {name: (out / name / "images.npy").stat().st_ino for name in done}
    write_shards(val_table, out, CROP, HEATMAP, shard_size=8, workers=2, progress=False)
    assert {n: (out / n / "images.npy").stat().st_ino for n in done} == kept  # not rewritten
    fresh = tmp_path / "fresh"
    write_shards(val_table, fresh, CROP, HEATMAP, shard_size=8, workers=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in fresh.iterdir())
    for shard in fresh.glob("shard-*"):
        for arr in shard.glob("*.npy"):
            np.testing.assert_array_equal(np.load(arr), np.load(out / shard.name / arr.name))


def test_undecodable_image_is_skipped_and_counted(tmp_path, sample_copy):
    table = person_records(ann_path(sample_copy, "val"), sample_copy / "val2017")[0]
    victim = table["image_path"].iloc[5]
    with open(victim, "r+b") as f:  # keeps the JPEG header, destroys the rest
        f.seek(3)
        f.write(b"\0" * 4000)
        f.truncate(4003)
    n_victim = int((table["image_path"] == victim).sum())
    index = write_shards(table, tmp_path / "s", CROP, HEATMAP, shard_size=16, workers=1, progress=False)
    assert index["samples"] == len(table) - n_victim and len(index["skipped"]) == n_victim
    assert all(victim in s["reason"] and "cannot decode" in s["reason"] for s in index["skipped"])
    ds = ShardDataset(tmp_path / "s")
    assert len(ds) == len(table) - n_victim
    assert not set(ds.ann_ids) & {s["ann_id"] for s in index["skipped"]}
