"""`squatpose import-lsp`: Leeds Sports Pose joints -> COCO keypoints, on real LSPET and on made files."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.io

from squatpose import joints
from squatpose.coco import person_records
from squatpose.errors import AnnotationError
from squatpose.lsp import LSP_TO_COCO, import_lsp, parse_split, parse_splits
from squatpose.subsets import lower
from tests.conftest import SHARED

LSPET = SHARED / "lspet"


def _images(folder, names, size=(120, 80)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _lspet_joints(n: int) -> np.ndarray:
    """(14, 3, n) LSPET layout: joint k of image i at (10 + k + i, 20 + 2k), visible."""
    j = np.zeros((14, 3, n))
    for i in range(n):
        for k in range(14):
            j[k, :, i] = (10 + k + i, 20 + 2 * k, 1)
    return j


def test_lspet_layout_mapping_visibility_and_box(tmp_path):
    j = _lspet_joints(4)
    j[5, :, 1] = (-7, 300, 0)  # image 2: left ankle not annotated (LSPET: coordinates are junk)
    j[:, 2, 2] = 0
    j[0, 2, 2] = j[1, 2, 2] = 1  # image 3: only two joints
    j[:, 2, 3] = 0
    j[0, 2, 3] = 1  # image 4: one joint: left out
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": j})
    _images(tmp_path / "images", [f"im{i:05d}.jpg" for i in (1, 2, 3, 4)])
    counts = import_lsp(tmp_path / "joints.mat", tmp_path / "images", tmp_path / "out")
    assert counts == {"all": {"path": str(tmp_path / "out" / "annotations" / "person_keypoints_all.json"),
                              "layout": "lspet", "persons": 3, "missing_image": 0, "unreadable_image": 0,
                              "too_few_joints": 1}}
    data = json.loads((tmp_path / "out" / "annotations" / "person_keypoints_all.json").read_text())
    assert data["categories"][0]["keypoints"] == list(joints.COCO_KEYPOINTS)
    a1, a2, a3 = data["annotations"]
    kp = np.array(a1["keypoints"]).reshape(17, 3)
    for lsp_k, coco_k in LSP_TO_COCO.items():
        assert tuple(kp[coco_k]) == (10 + lsp_k, 20 + 2 * lsp_k, 2)
    assert kp[:5].sum() == 0  # no face keypoints in LSP
    assert tuple(kp[joints.COCO_INDEX[joints.NAMES.index("right_ankle")]]) == (10, 20, 2)  # LSP 0
    assert tuple(kp[joints.COCO_INDEX[joints.NAMES.index("left_hip")]]) == (13, 26, 2)  # LSP 3
    # bbox: extent of all 14 joints (x 10..23, y 20..46) grown by 10 % a side
    assert a1["bbox"] == pytest.approx([10 - 1.3, 20 - 2.6, 13 * 1.2, 26 * 1.2])
    assert a1["area"] == pytest.approx(13 * 1.2 * 26 * 1.2) and a1["num_keypoints"] == 12
    kp2 = np.array(a2["keypoints"]).reshape(17, 3)
    assert tuple(kp2[15]) == (0, 0, 0)  # unannotated: unlabeled
    assert a3["num_keypoints"] == 2 and a3["image_id"] == 3
    assert data["images"][0] == {"id": 1, "file_name": "im00001.jpg", "width": 120, "height": 80}
    # the pipeline reads it like any COCO file
    table, report = person_records(tmp_path / "out" / "annotations" / "person_keypoints_all.json", tmp_path / "images")
    assert report.persons == 3 and len(lower(table)) == 1


def test_original_lsp_layout_marks_occluded_joints(tmp_path):
    j = np.transpose(_lspet_joints(3), (1, 0, 2)).copy()  # (3, 14, N)
    j[2] = 0
    j[2, 4, 0] = 1  # LSP: flag 1 = occluded left knee
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": j})
    _images(tmp_path / "images", ["im0001.jpg"])  # LSP's 4-digit names; image 2 missing, 3 not an image
    (tmp_path / "images" / "im0003.jpg").write_text("not a JPEG")
    counts = import_lsp(tmp_path / "joints.mat", tmp_path / "images", tmp_path / "out", {"train": range(1, 4)})
    assert {k: v for k, v in counts["train"].items() if k != "path"} == {
        "layout": "lsp", "persons": 1, "missing_image": 1, "unreadable_image": 1, "too_few_joints": 0}
    data = json.loads((tmp_path / "out" / "annotations" / "person_keypoints_train.json").read_text())
    kp = np.array(data["annotations"][0]["keypoints"]).reshape(17, 3)
    assert kp[13, 2] == 1 and kp[11, 2] == 2 and kp[16, 2] == 2


@pytest.mark.parametrize("text", ["train", "train=0-5", "train=9-3", "train=1-x", "=1-3"])
def test_bad_split_is_refused(text):
    with pytest.raises(AnnotationError, match="NAME=FIRST-LAST"):
        parse_split(text)


def test_overlapping_or_repeated_splits_are_refused(tmp_path):
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": _lspet_joints(10)})
    (tmp_path / "images").mkdir()
    with pytest.raises(AnnotationError, match="split val overlaps another split \\(image 7\\)"):
        import_lsp(tmp_path / "joints.mat", tmp_path / "images", tmp_path / "o",
                   parse_splits(["train=1-8", "val=7-10"]))
    with pytest.raises(AnnotationError, match="--split a given twice"):
        parse_splits(["a=1-2", "a=3-4"])
    assert not (tmp_path / "o").exists()


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "joints.mat").write_text("not a mat file")
    (tmp_path / "images").mkdir()

    def run(*args):
        return subprocess.run([sys.executable, "-m", "squatpose.cli", "import-lsp", *args], capture_output=True,
                              text=True, timeout=120)

    p = run(str(tmp_path / "joints.mat"), str(tmp_path / "images"), "--out", str(tmp_path / "o"))
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0
    assert "joints.mat: not a MATLAB .mat file" in p.stderr
    scipy.io.savemat(tmp_path / "bad.mat", {"joints": np.zeros((14, 2, 5))})
    p = run(str(tmp_path / "bad.mat"), str(tmp_path / "images"), "--out", str(tmp_path / "o"))
    assert p.returncode == 1 and "'joints' is 14x2x5, expected 14 x 3 x N" in p.stderr
    nan = _lspet_joints(3)
    nan[4, 0, 1] = np.nan  # x of joint 5 (left knee) of image 2
    scipy.io.savemat(tmp_path / "nan.mat", {"joints": nan})
    p = run(str(tmp_path / "nan.mat"), str(tmp_path / "images"), "--out", str(tmp_path / "o"))
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0
    assert "nan.mat: joint 5 of image 2 is not a finite number (1 non-finite values in 'joints')" in p.stderr
    scipy.io.savemat(tmp_path / "ok.mat", {"joints": _lspet_joints(3)})
    p = run(str(tmp_path / "ok.mat"), str(tmp_path / "images"), "--out", str(tmp_path / "o"), "--split", "a=2-9")
    assert p.returncode == 1 and "split a asks for image 9, but joints has 3 rows" in p.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not (LSPET / "joints.mat").is_file(), reason="../shared/data/lspet not present")
def test_real_lspet(tmp_path):
    """The shared LSPET files: 7000 + 1000 persons, joints equal to joints.mat, boxes around them."""
    p = subprocess.run([sys.executable, "-m", "squatpose.cli", "import-lsp", str(LSPET / "joints.mat"),
                        str(LSPET / "images"), "--out", str(tmp_path), "--split", "train=1-7000",
                        "--split", "val=7001-8000"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "7000 persons" in p.stdout and "1000 persons" in p.stdout and "data.source=coco_dir" in p.stdout
    mat = scipy.io.loadmat(LSPET / "joints.mat")["joints"]  # (14, 3, 10000)
    val = json.loads((tmp_path / "annotations" / "person_keypoints_val.json").read_text())
    assert [a["image_id"] for a in val["annotations"]] == list(range(7001, 8001))
    for ann in val["annotations"][::97]:
        kp = np.array(ann["keypoints"]).reshape(17, 3)
        m = mat[:, :, ann["image_id"] - 1]
        x, y, w, h = ann["bbox"]
        for lsp_k, coco_k in LSP_TO_COCO.items():
            if m[lsp_k, 2] == 1:
                assert kp[coco_k] == pytest.approx([m[lsp_k, 0], m[lsp_k, 1], 2], abs=0.01)
                assert x <= kp[coco_k, 0] <= x + w and y <= kp[coco_k, 1] <= y + h
            else:
                assert kp[coco_k, 2] == 0
    table, report = person_records(tmp_path / "annotations" / "person_keypoints_val.json", LSPET / "images")
    # persons with no leg joint annotated are not person records; about 60 % have all six
    assert 990 <= report.persons <= 1000 and 0.5 < len(lower(table)) / report.persons < 0.7
