import json
import logging

import numpy as np
import pandas as pd
import pytest

from squatpose import joints
from squatpose.coco import load_coco, person_records
from squatpose.errors import AnnotationError
from tests.conftest import SAMPLE, SHARED, ann_path, load_json, raw_counts


@pytest.mark.parametrize("split", ["train", "val"])
def test_records_match_the_raw_json(split):
    raw = load_json(ann_path(SAMPLE, split))
    table, report = person_records(ann_path(SAMPLE, split), SAMPLE / f"{split}2017")
    counts = raw_counts(raw)
    assert len(table) == counts["full"] == report.persons
    assert report.crowd_ignored == counts["crowd"]
    # Every row equals its annotation: ids, bbox, the six keypoints at COCO indices 11..16.
    by_id = {a["id"]: a for a in raw["annotations"]}
    images = {im["id"]: im for im in raw["images"]}
    kp = joints.keypoints_from_table(table)
    for i, row in enumerate(table.itertuples()):
        a = by_id[row.ann_id]
        assert a["image_id"] == row.image_id and not a["iscrowd"]
        np.testing.assert_allclose([row.bbox_x, row.bbox_y, row.bbox_w, row.bbox_h], a["bbox"], rtol=1e-6)
        np.testing.assert_allclose(kp[i].ravel(), a["keypoints"][33:51], rtol=1e-6)
        assert row.image_path.endswith(images[row.image_id]["file_name"])
        assert (row.width, row.height) == (images[row.image_id]["width"], images[row.image_id]["height"])
    assert list(table.columns[-18:]) == list(joints.KEYPOINT_COLUMNS)


@pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")
def test_embedded_sample_is_the_unmodified_official_subset():
    for split in ("train", "val"):
        shared = SHARED / "coco-mini" / "annotations" / f"person_keypoints_{split}2017.json"
        assert ann_path(SAMPLE, split).read_bytes() == shared.read_bytes()
        names = {im["file_name"] for im in load_json(shared)["images"]}
        assert names == {p.name for p in (SAMPLE / f"{split}2017").iterdir()}


def _write(tmp_path, data, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "{not json", "not valid JSON"),
    (lambda d: d.pop("annotations"), "missing list 'annotations'"),
    (lambda d: d["categories"][0].update(keypoints=["a"] * 17), "categories: 'person' keypoints lack left_hip"),
    (lambda d: d["categories"][0].pop("keypoints"), "categories: 'person' has no list of keypoint names"),
    (lambda d: d["annotations"][3].update(bbox=[1, 2, 3]), "annotation {id3}: bbox is not 4 finite numbers"),
    (lambda d: d["annotations"][3]["bbox"].__setitem__(2, float("nan")), "annotation {id3}: bbox is not 4 finite"),
    (lambda d: d["annotations"][3]["bbox"].__setitem__(0, float("inf")), "annotation {id3}: bbox is not 4 finite"),
    (lambda d: d["annotations"][3]["bbox"].__setitem__(3, 1e39), "annotation {id3}: bbox is not 4 finite numbers within"),
    (lambda d: d["annotations"][3]["keypoints"].__setitem__(34, float("nan")),
     "annotation {id3}: keypoints is not 17 x (x, y, v) finite numbers"),
    (lambda d: d["annotations"][3].update(area=float("-inf")), "annotation {id3}: area is not a finite number between 0 and 1e12"),
    (lambda d: d["images"][0].update(height=float("nan")), "needs an integer id, a file_name string"),
    (lambda d: d["images"][0].update(width=0), "size 0x"),
    (lambda d: d["images"][0].update(width=20000, height=20000), "is not between 1x1 and 50 megapixels"),
    (lambda d: d["images"][0].update(file_name="../../x.jpg"), "file_name '../../x.jpg' leaves the image folder"),
    (lambda d: d["images"][0].update(file_name="/etc/passwd"), "file_name '/etc/passwd' leaves the image folder"),
    (lambda d: d["annotations"][3].update(keypoints=[0] * 50), "annotation {id3}: keypoints is not 17"),
    (lambda d: d["annotations"][3].update(image_id=-5), "annotation {id3}: image_id not in 'images'"),
    (lambda d: d["images"][0].pop("width"), "needs an integer id, a file_name string"),
    (lambda d: d["images"][0].update(width="640"), "needs an integer id, a file_name string"),
    (lambda d: d["images"][0].update(id=[1]), "needs an integer id, a file_name string"),
    (lambda d: d["images"][0].update(file_name=7), "needs an integer id, a file_name string"),
    (lambda d: d["images"].append(dict(d["images"][0])), "image ids are not unique"),
    (lambda d: d["annotations"][3].pop("category_id"), "annotation {id3}: no integer category_id"),
    (lambda d: d["annotations"][3].update(id=d["annotations"][2]["id"]),
     "annotation {id2}: id used twice"),
])
def test_malformed_annotation_files_stop_with_one_line_naming_file_and_record(tmp_path, mutate, message):
    data = load_json(ann_path(SAMPLE, "val"))
    id2, id3 = data["annotations"][2]["id"], data["annotations"][3]["id"]
    result = mutate(data)
    path = _write(tmp_path, result if isinstance(result, str) else data)
    with pytest.raises(AnnotationError) as e:
        load_coco(path)
    text = str(e.value)
    assert text.startswith(str(path)) and "\n" not in text
    assert message.format(id2=id2, id3=id3) in text


def test_missing_annotation_file(tmp_path):
    with pytest.raises(AnnotationError, match="annotation file not found"):
        load_coco(tmp_path / "nope.json")


def test_own_skeleton_is_read_by_joint_names(tmp_path):
    """A labeling tool's export with its own keypoint list (here: the six joints, reordered, plus
    two others) gives the same person records as the COCO file it was made from."""
    data = load_json(ann_path(SAMPLE, "val"))
    coco_names = data["categories"][0]["keypoints"]
    own = ["right_ankle", "toe", "left_hip", "left_ankle", "right_hip", "left_knee", "heel", "right_knee"]
    for ann in data["annotations"]:
        kp = ann["keypoints"]
        ann["keypoints"] = [v for n in own for v in
                            (kp[3 * coco_names.index(n): 3 * coco_names.index(n) + 3] if n in coco_names
                             else [5, 5, 2])]
    data["categories"][0]["keypoints"] = own
    path = _write(tmp_path, data, "own.json")
    table, report = person_records(path, SAMPLE / "val2017")
    expected, _ = person_records(ann_path(SAMPLE, "val"), SAMPLE / "val2017")
    pd.testing.assert_frame_equal(table, expected)
    assert report.persons == len(expected) > 40


def _labeled(ann):
    return any(ann["keypoints"][3 * j + 2] > 0 for j in joints.COCO_INDEX)


def test_bad_records_are_skipped_counted_and_named(sample_copy, caplog):
    path = ann_path(sample_copy, "val")
    data = load_json(path)
    anns = [a for a in data["annotations"] if not a["iscrowd"] and _labeled(a)]
    zero, outside = anns[0], anns[1]
    zero["bbox"][2] = 0
    images = {im["id"]: im for im in data["images"]}
    # a labeled ankle placed right of the image
    j = next(j for j in joints.COCO_INDEX if outside["keypoints"][3 * j + 2] > 0)
    outside["keypoints"][3 * j] = images[outside["image_id"]]["width"] + 50
    # one image deleted, one replaced by text: all of their persons are skipped
    gone = next(a for a in anns[2:] if a["image_id"] not in (zero["image_id"], outside["image_id"]))
    gone_img = images[gone["image_id"]]
    (sample_copy / "val2017" / gone_img["file_name"]).unlink()
    junk = next(a for a in anns[2:] if a["image_id"] not in
                (zero["image_id"], outside["image_id"], gone["image_id"]))
    junk_img = images[junk["image_id"]]
    (sample_copy / "val2017" / junk_img["file_name"]).write_text("not an image")
    path.write_text(json.dumps(data))

    with caplog.at_level(logging.WARNING):
        table, report = person_records(path, sample_copy / "val2017")
    n_gone = sum(1 for a in anns if a["image_id"] == gone["image_id"])
    n_junk = sum(1 for a in anns if a["image_id"] == junk["image_id"])
    assert report.skipped == {"zero_size_bbox": 1, "missing_image": n_gone, "unreadable_image": n_junk}
    assert report.joints_outside_image == 1
    assert len(table) == len(anns) - 1 - n_gone - n_junk
    assert zero["id"] not in set(table["ann_id"])
    row = table.index[table["ann_id"] == outside["id"]][0]
    assert joints.keypoints_from_table(table)[row, joints.COCO_INDEX.index(j), 2] == 0
    lines = caplog.text.splitlines()
    assert any(str(path) in l and f"annotation {zero['id']}: bbox has zero size" in l for l in lines)
    assert any(f"annotation {outside['id']}" in l and "outside the" in l for l in lines)
    assert any(f"annotation {gone['id']}: missing image" in l for l in lines)
    assert any(f"annotation {junk['id']}: unreadable image" in l for l in lines)


def test_masks_are_dropped_while_parsing_and_nothing_else_is():
    """Segmentation polygons and crowd RLEs are most of COCO's parsed train file and unused here."""
    raw = load_json(ann_path(SAMPLE, "train"))
    coco, _ = load_coco(ann_path(SAMPLE, "train"))
    assert all("segmentation" in a for a in raw["annotations"])
    assert not any("segmentation" in a for a in coco.dataset["annotations"])
    for ann in raw["annotations"]:
        del ann["segmentation"]
    assert coco.dataset["annotations"] == raw["annotations"] and coco.dataset["images"] == raw["images"]
