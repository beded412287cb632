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
from squatpose.codec import HeatmapCodec, SimCCCodec, in_crop_keypoints
from squatpose.coco import bboxes_from_table, person_records
from squatpose.config import CropConfig
from pathlib import Path

from squatpose import shards
from squatpose.dataset import ShardDataset, crops_to_tensor
from squatpose.errors import ImageError, ShardError
from squatpose.geometry import invert_affine, warp
from squatpose.imaging import MEAN, STD, read_image
from squatpose.shards import crop_persons, write_shards
from squatpose.subsets import lower
from tests.conftest import REPO, SAMPLE, ann_path, claiming_size

CROP = CropConfig()


@pytest.fixture(scope="module")
def val_table() -> pd.DataFrame:
    return person_records(ann_path(SAMPLE, "val"), SAMPLE / "val2017")[0]


@pytest.fixture(scope="module")
def val_shards(tmp_path_factory, val_table):
    out = tmp_path_factory.mktemp("shards") / "val"
    index = write_shards(val_table, out, CROP, shard_size=16, workers=2, progress=False)
    return out, index


def test_index_and_shard_layout(val_shards, val_table):
    out, index = val_shards
    assert index == json.loads((out / "index.json").read_text())
    assert index["samples"] == index["persons"] == len(val_table) == 51
    assert [s["samples"] for s in index["shards"]] == [16, 16, 16, 3]
    assert sorted(p.name for p in out.iterdir()) == ["index.json"] + [f"shard-{k:05d}" for k in range(4)]
    # no targets: one shard set serves every codec
    assert index["format_version"] == 3 and index["crop"] == {"width": 192, "height": 256, "padding": 1.25}
    assert "heatmap" not in index and "codec" not in index
    assert sorted(p.name for p in (out / "shard-00000").iterdir()) == [
        "ann_ids.npy", "areas.npy", "bboxes.npy", "crop_to_image.npy", "image_ids.npy", "images.npy", "in_crop.npy",
        "keypoints.npy", "kp_crop.npy", "meta.json"]


def test_every_stored_sample_equals_the_jpeg_path(val_shards, val_table):
    """Crops, keypoints, in-crop flags and transforms equal what decoding each JPEG gives; the
    codec's targets from the stored keypoints are the targets of the JPEG path's keypoints."""
    out, _ = val_shards
    ds = ShardDataset(out)
    assert len(ds) == 51 and ds.ann_ids.tolist() == val_table["ann_id"].tolist()
    m, kp_crop = crop_persons(val_table, CROP)
    x, y = kp_crop[..., 0], kp_crop[..., 1]
    inside = (kp_crop[..., 2] > 0) & (x >= 0) & (x <= 191) & (y >= 0) & (y <= 255)
    # real persons with labeled joints outside their crop: in_crop is not just "labeled"
    assert inside.sum() == 194 and ((kp_crop[..., 2] > 0) & ~inside).sum() == 4
    for i, path in enumerate(val_table["image_path"]):
        np.testing.assert_array_equal(ds.array("images", i), warp(read_image(path), m[i], 192, 256))
        np.testing.assert_array_equal(ds.array("in_crop", i), inside[i].astype(np.float32))
        assert ds.array("in_crop", i).dtype == np.float32
        np.testing.assert_array_equal(ds.array("kp_crop", i), kp_crop[i])
        np.testing.assert_allclose(ds.array("crop_to_image", i), invert_affine(m[i:i + 1])[0])
    # what evaluation scores against, so it never re-reads the subset table
    np.testing.assert_array_equal(ds.gather("keypoints"), joints.keypoints_from_table(val_table))
    np.testing.assert_array_equal(ds.gather("bboxes"), bboxes_from_table(val_table))
    np.testing.assert_array_equal(ds.gather("areas"), val_table["area"].to_numpy())
    np.testing.assert_array_equal(ds.gather("image_ids"), val_table["image_id"].to_numpy())
    expect_kp = kp_crop.copy()
    expect_kp[..., 2] *= inside
    for codec in (HeatmapCodec(), HeatmapCodec(stride=2), SimCCCodec()):
        stored = in_crop_keypoints(torch.from_numpy(ds.gather("kp_crop")), torch.from_numpy(ds.gather("in_crop")))
        target, weight = codec.encode(stored)
        expect_target, expect_weight = codec.encode(expect_kp)
        np.testing.assert_array_equal(target.numpy(), expect_target)
        np.testing.assert_array_equal(weight.numpy(), expect_weight)
        assert (weight.numpy() <= inside).all() and weight.sum() >= inside.sum() - 5  # in the crop: on the grid
        assert float(target.numpy()[weight.numpy() == 0].max()) == 0


def test_dataset_items(val_shards, val_table):
    out, _ = val_shards
    ds = ShardDataset(out)
    codec = HeatmapCodec()
    kp_img = joints.keypoints_from_table(val_table)
    partial = int(np.flatnonzero((kp_img[:, :, 2] == 0).any(axis=1))[0])  # has unlabeled joints
    for i in (0, 50, partial):
        item = ds[i]
        assert item["image"].shape == (256, 192, 3) and item["image"].dtype == torch.uint8
        assert torch.equal(item["image"], torch.from_numpy(np.array(ds.array("images", i))))
        crop = item["image"].permute(2, 0, 1).float() / 255
        expect = (crop - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        normalised = crops_to_tensor(item["image"])
        torch.testing.assert_close(normalised, expect)
        assert normalised.is_contiguous() and crops_to_tensor(item["image"][None]).is_contiguous()
        assert set(item) == {"image", "kp_crop", "in_crop", "index"}
        torch.testing.assert_close(item["kp_crop"], torch.from_numpy(np.array(ds.array("kp_crop", i))))
        assert item["kp_crop"].shape == (6, 3) and item["in_crop"].dtype == torch.float32
        w = item["in_crop"].numpy() > 0
        np.testing.assert_array_equal(w, kp_img[i, :, 2] > 0)  # these persons' labeled joints are in their crops
        target, weight = codec.encode(in_crop_keypoints(item["kp_crop"][None], item["in_crop"][None]))
        np.testing.assert_array_equal(weight[0].numpy() > 0, w)
        assert float(target[0][torch.from_numpy(~w)].abs().sum()) == 0
        assert float(target[0][torch.from_numpy(w)].amax(dim=(1, 2)).min()) > 0.8  # a peak at each joint
        assert item["index"] == i
    assert not (ds[partial]["in_crop"] > 0).all()


def test_dataset_selects_a_subset_in_its_order(val_shards, val_table):
    out, _ = val_shards
    sub = lower(val_table)
    ds = ShardDataset(out, sub["ann_id"].to_numpy()[::-1])
    assert len(ds) == len(sub) == 22 and ds.missing == 0
    assert ds.ann_ids.tolist() == sub["ann_id"].tolist()[::-1]
    ds_missing = ShardDataset(out, np.array([sub["ann_id"].iloc[0], -1]))
    assert len(ds_missing) == 1 and ds_missing.missing == 1
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)))
    assert batch["image"].shape == (8, 256, 192, 3) and batch["kp_crop"].shape == (8, 6, 3)
    assert batch["in_crop"].shape == (8, 6)
    assert HeatmapCodec().encode(in_crop_keypoints(batch["kp_crop"], batch["in_crop"]))[0].shape == (8, 6, 64, 48)


def test_rerun_keeps_matching_shards_and_rebuilds_on_new_settings(tmp_path, val_table):
    out = tmp_path / "s"
    write_shards(val_table, out, CROP, shard_size=32, workers=1, progress=False)
    before = {p.name: p.stat().st_ino for p in out.glob("shard-*")}
    write_shards(val_table, out, CROP, shard_size=32, workers=1, progress=False)
    assert {p.name: p.stat().st_ino for p in out.glob("shard-*")} == before
    write_shards(val_table, out, CropConfig(padding=1.3), shard_size=32, workers=1, progress=False)
    after = {p.name: p.stat().st_ino for p in out.glob("shard-*")}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)
    assert json.loads((out / "index.json").read_text())["crop"]["padding"] == 1.3


def test_killed_run_resumes_and_ends_equal_to_an_uninterrupted_one(tmp_path, val_table):
    table_path = tmp_path / "val.parquet"
    val_table.to_parquet(table_path)
    out = tmp_path / "resumed"
    driver = textwrap.dedent(f"""
        import time, pandas as pd, squatpose.shards as s
        from squatpose.config import CropConfig
        build = s._build_shard
        def slow(task):
            result = build(task)
            time.sleep(0.4)  # room for the test to kill us between shards
            return result
        s._build_shard = slow
        s.write_shards(pd.read_parquet({str(table_path)!r}), {str(out)!r}, CropConfig(),
                       shard_size=8, workers=1, progress=False)
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
    write_shards(val_table, out, CROP, shard_size=8, workers=2, progress=False)
    assert {n: (out / n / "images.npy").stat().st_ino for n in done} == kept  # not rewritten
    fresh = tmp_path / "fresh"
    write_shards(val_table, fresh, CROP, shard_size=8, workers=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in fresh.iterdir())
    for shard in fresh.glob("shard-*"):
        for arr in shard.glob("*.npy"):
            np.testing.assert_array_equal(np.load(arr), np.load(out / shard.name / arr.name))


def test_a_code_change_rebuilds_every_shard(tmp_path, val_table, monkeypatch):
    out = tmp_path / "s"
    write_shards(val_table, out, CROP, shard_size=32, workers=1, progress=False)
    before = {p.name: p.stat().st_ino for p in out.glob("shard-*")}
    monkeypatch.setattr(shards, "shard_code", lambda: "edited geometry.py")
    write_shards(val_table, out, CROP, shard_size=32, workers=1, progress=False)
    after = {p.name: p.stat().st_ino for p in out.glob("shard-*")}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)


def test_truncated_jpeg_is_refused(tmp_path):
    src = next((SAMPLE / "val2017").iterdir())
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(ImageError, match="cut.jpg: cannot decode image \\(truncated JPEG"):
        read_image(cut)
    with pytest.raises(ImageError, match="image not found"):
        read_image(tmp_path / "none.jpg")


def test_image_whose_header_claims_a_huge_size_is_refused_before_decoding(tmp_path):
    src = next((SAMPLE / "val2017").iterdir())
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(claiming_size(src.read_bytes(), 9000, 9000))
    assert bomb.stat().st_size < 300_000
    with pytest.raises(ImageError, match="bomb.jpg: image of 9000x9000 pixels is over the 50-megapixel limit"):
        read_image(bomb)
    bomb.write_bytes(claiming_size(src.read_bytes(), 20000, 20000))
    with pytest.raises(ImageError, match="bomb.jpg: image header claims over 179 megapixels, over the 50-megapixel"):
        read_image(bomb)
    ok = tmp_path / "ok.jpg"
    ok.write_bytes(claiming_size(src.read_bytes(), *read_image(src).shape[1::-1]))  # its true size: decodes
    assert read_image(ok).shape == read_image(src).shape


def test_undecodable_image_is_skipped_and_counted(tmp_path, sample_copy):
    table = person_records(ann_path(sample_copy, "val"), sample_copy / "val2017")[0]
    victim = table["image_path"].iloc[5]
    with open(victim, "r+b") as f:  # keeps the JPEG header, destroys the rest
        f.seek(3)
        f.write(b"\0" * 4000)
        f.truncate(4003)
    n_victim = int((table["image_path"] == victim).sum())
    index = write_shards(table, tmp_path / "s", CROP, shard_size=16, workers=1, progress=False)
    assert index["samples"] == len(table) - n_victim and len(index["skipped"]) == n_victim
    assert all(victim in s["reason"] and "cannot decode" in s["reason"] for s in index["skipped"])
    ds = ShardDataset(tmp_path / "s")
    assert len(ds) == len(table) - n_victim
    assert not set(ds.ann_ids) & {s["ann_id"] for s in index["skipped"]}
    # once the image is fixed, a rerun retries that shard and the persons are back
    victim_name = Path(victim).name
    Path(victim).write_bytes((SAMPLE / "val2017" / victim_name).read_bytes())
    index = write_shards(table, tmp_path / "s", CROP, shard_size=16, workers=1, progress=False)
    assert index["samples"] == len(table) and index["skipped"] == []
