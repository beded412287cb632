"""The model shipped inside the package: it loads, it is the default of `squatpose analyze`, it
finds real joints, and its calibrated uncertainty covers its real errors on persons it never saw
(the embedded COCO sample's val persons: neither trained nor calibrated on)."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SAMPLE, SHARED
from squatpose.codec import codec_from_meta
from squatpose.config import CropConfig, load_params
from squatpose.dataset import ShardDataset
from squatpose.evaluate import predict
from squatpose.joints import NAMES
from squatpose.models import load_checkpoint
from squatpose.shards import write_shards
from squatpose.squat.uncertainty import COVERAGE, REFRAMED_DRAWS, REFRAMING, Calibration, framed_errors
from squatpose.subsets import subset_path, write_subsets
from squatpose.weights import SHIPPED

CLIP = REPO / "tests" / "data" / "squat-side-gym-clip.mp4"  # 80 frames of the side-view gym video, 152x270
GYM = SHARED / "squat-videos" / "squat-side-gym.mp4"  # the whole video, 608x1080, 614 frames
BOX = "45,75,60,160"


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(SHIPPED)


def test_shipped_model_is_small_and_carries_its_calibration(shipped):
    _, meta = shipped
    assert SHIPPED.stat().st_size < 10 * 1024 * 1024
    calibration = Calibration.from_meta(meta["calibration"])
    assert calibration is not None and len(calibration.errors) == 3
    assert meta["trained_on"].startswith("LSP Extended") and meta["crop"]["width"] < meta["crop"]["height"]


@pytest.fixture(scope="module")
def sample_val(tmp_path_factory, shipped):
    """The sample's val persons, cropped at the shipped model's crop size by the pipeline's code."""
    _, meta = shipped
    tmp = tmp_path_factory.mktemp("sample")
    write_subsets(SAMPLE, tmp / "subsets", tmp / "subsets.json", load_params().subsets)
    table = pd.read_parquet(subset_path(tmp / "subsets", "val", "full"))
    write_shards(table, tmp / "shards", CropConfig(**meta["crop"]), 64, 0)
    return ShardDataset.from_subset(tmp / "shards", subset_path(tmp / "subsets", "val", "full"))


def test_shipped_calibration_is_made_on_reframed_persons_and_holds_for_new_framings(shipped, sample_val):
    # the analysis meets boxes that are off and legs-only framing, not boxes made from the joints:
    # the shipped ± was calibrated on LSPET val persons so reframed (this code's method), and holds
    # for such framings of persons of another dataset (the sample's val persons: never trained or
    # calibrated on); on their stored crops, the next test
    model, meta = shipped
    method = meta["calibration"]["method"]
    assert method["reframed_draws"] == REFRAMED_DRAWS and method["reframing"] == asdict(REFRAMING)
    assert method["persons"] > 900  # LSPET val
    fresh = framed_errors(model, codec_from_meta(meta), sample_val, 2, stored=False, seed=1)
    assert len(fresh[0]) > 200
    held = Calibration.from_meta(meta["calibration"]).covers(*fresh).mean()
    assert held >= COVERAGE - 0.12, held  # another dataset: some shift, not a ± that claims too much


def test_calibrated_radius_covers_real_errors_on_unseen_coco_persons(shipped, sample_val):
    model, meta = shipped
    pred = predict(model, sample_val, codec_from_meta(meta))
    truth, seen = sample_val.gather("kp_crop")[..., :2], sample_val.gather("in_crop") > 0
    error = np.linalg.norm(pred.kp_crop - truth, axis=-1)
    calibration = Calibration.from_meta(meta["calibration"])
    joint = np.broadcast_to(np.arange(len(NAMES)), seen.shape)[seen]
    covered = calibration.covers((pred.kp_crop - truth)[seen], pred.confidence[seen], joint)
    assert len(covered) > 100
    # nominal 90 % on LSPET; COCO is another dataset, so allow some shift, but not a model that
    # claims a precision it does not have
    assert covered.mean() >= COVERAGE - 0.15, covered.mean()
    # and the radius means something: confident joints are nearer the truth than unsure ones
    conf, err = pred.confidence[seen], error[seen]
    assert np.median(err[conf >= np.median(conf)]) < np.median(err[conf < np.median(conf)])


@pytest.mark.slow
def test_analyze_defaults_to_the_shipped_model_and_says_how_sure_it_is(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "squatpose.cli", "analyze", str(CLIP), "--box", BOX,
                          "--out", str(out), "--quiet"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["path"] == str(SHIPPED)
    assert summary["uncertainty"].startswith("+- half-width")  # calibrated: verdicts are possible
    # a trained model: sure of this lifter's hips in most frames (an untrained one is sure of nothing)
    assert summary["joint_confident_fraction"]["left_hip"] > 0.8 and summary["frames_with_confident_joints"] > 60
    frames = pd.read_csv(out / "frames.csv")
    for side in ("left", "right"):
        angle, unc = frames[f"knee_angle_{side}"], frames[f"knee_angle_{side}_unc"]
        assert unc[angle.isna()].isna().all()  # no uncertainty of an angle that was not made
    # a deep squat is never called "above parallel" (docs/MODEL_CARD.md: this model makes no angle here)
    assert not any("above parallel" in line for line in summary["feedback"])


@pytest.mark.slow
def test_export_defaults_to_the_shipped_model(tmp_path):
    out = tmp_path / "shipped.onnx"
    run = subprocess.run([sys.executable, "-m", "squatpose.cli", "export", "--out", str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"{out}: ONNX export of {SHIPPED}" in run.stdout and out.stat().st_size > 100_000


def analyze(video: Path, box: str, out: Path) -> tuple[pd.DataFrame, dict]:
    """`video`'s frames.csv and summary.json, analysed with the shipped model from `box`."""
    run = subprocess.run([sys.executable, "-m", "squatpose.cli", "analyze", str(video), "--box", box,
                          "--out", str(out), "--quiet"], capture_output=True, text=True, cwd=out.parent)
    assert run.returncode == 0, run.stderr
    return pd.read_csv(out / "frames.csv"), json.loads((out / "summary.json").read_text())


def knee_angle_fraction(video: Path, box: str, out: Path) -> float:
    """The share of `video`'s frames with a knee angle, analysed with the shipped model from `box`."""
    return float(analyze(video, box, out)[0]["knee_angle"].notna().mean())


def rows_of(video: Path, rows: slice, out: Path) -> int:
    """Write `video`'s frames cut to `rows` to `out` (mp4); the number of frames."""
    import cv2

    reader = cv2.VideoCapture(str(video))
    first = reader.read()[1]
    height = len(range(*rows.indices(first.shape[0])))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), reader.get(cv2.CAP_PROP_FPS),
                             (first.shape[1], height))
    frames, frame = 0, first
    while frame is not None:
        writer.write(np.ascontiguousarray(frame[rows]))
        frames += 1
        frame = reader.read()[1]
    writer.release()
    reader.release()
    return frames


@pytest.mark.slow
def test_legs_only_video_is_read_best_from_a_box_at_the_persons_full_height(tmp_path):
    """The gym clip cut to its lower 120 rows (the frame's top edge cuts the thighs), as
    docs/squat-analysis.md advises: a box where the whole person would be, running above the frame,
    shows the legs at the scale the model was trained on (black above, as its top-cut augmentation
    does) and gives knee angles on about half the frames; a box around the legs alone gives fewer."""
    legs = tmp_path / "legs.mp4"
    assert rows_of(CLIP, slice(150, 270), legs) == 80
    full_height = knee_angle_fraction(legs, "50,-70,43,150", tmp_path / "full-height")
    legs_box = knee_angle_fraction(legs, "50,0,43,80", tmp_path / "legs-box")
    assert full_height > 0.45 and full_height > legs_box + 0.1, (full_height, legs_box)


@pytest.mark.slow
@pytest.mark.skipif(not GYM.is_file(), reason=f"needs {GYM}")
def test_gym_video_two_deep_reps_found_in_every_framing_and_never_called_above_parallel(tmp_path):
    """Issue 10's check on the real video (two squats well below parallel, bottoms at about frames
    315 and 515 by eye): the full view and the same video cut to its lower 480 rows (legs only),
    with the box around the legs and with the box at the person's full height."""
    legs = tmp_path / "legs.mp4"
    assert rows_of(GYM, slice(600, None), legs) == 614
    for video, box, name in [(GYM, "200,320,170,600", "full"), (legs, "200,0,170,320", "legs-box"),
                             (legs, "200,-280,170,600", "full-height")]:
        frames, summary = analyze(video, box, tmp_path / name)
        bottoms = [rep["bottom"] for rep in summary["reps"]]
        assert len(bottoms) == 2 and abs(bottoms[0] - 315) < 30 and abs(bottoms[1] - 515) < 30, (name, bottoms)
        assert "above" not in [rep.get("depth") for rep in summary["reps"]], name  # parallel, unsure or none
        assert not any("above parallel" in line for line in summary["feedback"]), (name, summary["feedback"])
        if name == "full-height":  # legs only: angles on most frames
            assert frames["knee_angle"].notna().mean() > 0.5, name
