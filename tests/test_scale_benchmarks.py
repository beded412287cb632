"""The scale benchmarks at tiny sizes: the COCO-shaped mirror, the download -> subsets -> shards
rehearsal with its kill-and-resume checks, and the loader benchmark."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from coco_mirror import Mirror, build_mirror  # noqa: E402

from squatpose.coco import person_records  # noqa: E402
from squatpose.download import Archive, download_archives  # noqa: E402


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(REPO / "src")})


def test_the_mirror_is_coco_shaped_and_holds_the_persons_asked_for(tmp_path):
    summary = build_mirror(tmp_path / "mirror", 120, val_persons=20, workers=1, progress=False)
    names = {p.relative_to(tmp_path / "mirror").as_posix() for p in (tmp_path / "mirror").rglob("*.zip")}
    assert names == {"annotations/annotations_trainval2017.zip", "zips/train2017.zip", "zips/val2017.zip"}
    out = tmp_path / "raw"
    with Mirror(tmp_path / "mirror") as m:  # served with sizes of its own, fetched as a mirror is
        download_archives(m.url, tuple(Archive(path, None, (top,)) for path, top in (
            ("annotations/annotations_trainval2017.zip", "annotations"), ("zips/val2017.zip", "val2017"),
            ("zips/train2017.zip", "train2017"))), out, tmp_path / "dl", progress=False)
    for split, wanted in (("train", 120), ("val", 20)):
        data = json.loads((out / "annotations" / f"person_keypoints_{split}2017.json").read_text())
        assert set(data) == {"info", "licenses", "images", "annotations", "categories"}
        records, report = person_records(out / "annotations" / f"person_keypoints_{split}2017.json",
                                         out / f"{split}2017")
        assert len(records) == summary[split]["persons"] >= wanted
        assert report.crowd_ignored == summary[split]["crowd"]
        assert summary[split]["no_keypoints"] > 0 and len(data["images"]) == summary[split]["images"]
        assert sum(report.skipped.values()) == 0 and report.joints_outside_image == 0
        assert records["bbox_x"].max() < 640 and records["bbox_y"].max() < 480  # inside the 640x480 mosaics
    with zipfile.ZipFile(tmp_path / "mirror" / "zips" / "val2017.zip") as z:
        assert all(n.startswith("val2017/") and len(Path(n).stem) == 12 for n in z.namelist())


@pytest.mark.slow
def test_rehearsal_measures_every_stage_and_resumes_after_sigkill(tmp_path):
    out = tmp_path / "scale.json"
    proc = run_script("coco_scale.py", "--sizes", "300,900", "--set", "shards.shard_size=64",
                      "--work", str(tmp_path / "work"), "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [r["size"] for r in results] == [300, 900]
    for r in results:
        assert set(r["stages"]) == {"download", "subsets", "shards@train", "shards@val"}
        for name, s in r["stages"].items():
            assert s["rc"] == 0 and s["wall_s"] > 0 and s["persons"] > 0
            assert 0 < s["all_mb"] < 2048, (name, s)  # no torch in the data stages: ~120 MB a process
        assert r["stages"]["shards@train"]["worker_mb"] > 0  # its two workers were seen
        assert r["stages"]["shards@train"]["disk_mb"] > r["stages"]["shards@val"]["disk_mb"] > 0
    shards, download = results[-1]["shards_resume"], results[-1]["download_resume"]
    assert 0 < shards["done_at_kill"] < shards["shards"] and shards["kept"] == shards["done_at_kill"]
    assert shards["identical"] and shards["resume_rc"] == 0 and shards["temporaries_left"] == 0
    assert download["killed_rc"] == -9 and 0 < download["part_at_kill"] < download["archive_bytes"]
    assert download["range_asked"] and download["identical"] and download["resume_rc"] == 0
    assert download["bytes_after_resume"] == download["archive_bytes"] - download["part_at_kill"]
    assert sum(" | download | " in x for x in proc.stdout.splitlines()) == 2  # the table: a line per stage and size
    assert "shards_resume" in proc.stdout and "peak disk" in proc.stdout
    assert not any((tmp_path / "work").iterdir())  # cleaned up after itself


@pytest.mark.slow
def test_loader_benchmark_prints_every_worker_count_and_model():
    proc = run_script("loader.py", "--persons", "100", "--batches", "2", "--batch-size", "8", "--steps", "1",
                      "--repeats", "1", "--models", "dilated,mobilenet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    rates = [float(x.rsplit("|", 2)[1].replace(",", "")) for x in lines if x.startswith("| 96x128") or x.startswith("| 192x256")]
    assert len(rates) == 2 * (6 + 2) and all(r > 0 for r in rates)  # a measured rate on every line
    for crop in ("96x128", "192x256"):
        for workers in ("0 workers", "1 worker", "2 workers"):
            assert sum(f"| {crop} | loader" in x and workers in x for x in lines) == 2
        assert sum(f"| {crop} | step " in x for x in lines) == 2
        assert any(x.startswith(f"{crop}: loader + augmentation with 2 workers") for x in lines)
    assert any("a GPU step at 5,000 samples/s needs" in x for x in lines)


def test_crowd_masks_survive_the_mirrors_rle_round_trip():
    """The mirror moves crowd regions as masks: COCO's uncompressed RLE of the sample, decoded and
    encoded again, gives back the same counts, and the mask's area is pycocotools' area of the RLE."""
    from coco_mirror import _rle_counts, _rle_mask
    from pycocotools import mask as mask_utils

    crowds = [a for split in ("train", "val") for a in json.loads(
        (REPO / "data/sample/annotations" / f"person_keypoints_{split}2017.json").read_text())["annotations"]
        if a["iscrowd"]]
    assert len(crowds) >= 5
    for ann in crowds:
        mask = _rle_mask(ann["segmentation"])
        h, w = ann["segmentation"]["size"]
        assert mask.shape == (h, w) and mask.sum() == mask_utils.area(mask_utils.frPyObjects(ann["segmentation"], h, w))
        assert _rle_counts(mask) == ann["segmentation"]["counts"]


def test_carry_size_prints_every_scale_and_quality_for_real_crops(tmp_path):
    from tests.conftest import sample_shards

    shards = sample_shards(tmp_path)
    proc = run_script("carry_size.py", str(shards / "train"), str(shards / "val"), "--sample", "8")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [x.split("|")[1:-1] for x in proc.stdout.splitlines() if x.startswith("| ") and x[2].isdigit()]
    assert [r[0].strip() for r in rows] == [s for s in ("192x256", "144x192", "120x160", "96x128") for _ in range(3)]
    kib = [float(r[2]) for r in rows]
    errors = [float(r[5]) for r in rows]
    assert kib[0] > kib[2] and errors[0] < errors[2]  # full size: quality 90 is larger and closer than 70
    assert kib[0] > kib[-1] and errors[0] < errors[-1]  # and than half size at 70
    assert "the tracked tree is" in proc.stdout and "leaving" in proc.stdout
