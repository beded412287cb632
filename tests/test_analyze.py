"""`squatpose analyze` end to end on a real squat video and image, its analysis on real joint
tracks, and every kind of bad input."""

import json
import signal
import subprocess
import sys
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, SAMPLE, claiming_size, penn_clips, penn_sequence
from squatpose import cli
from squatpose.codec import codec_from_meta
from squatpose.errors import SquatposeError
from squatpose.geometry import crop_person, warp
from squatpose.joints import NAMES
from squatpose.models import build, save_checkpoint
from squatpose.pose_model import load_pose_model
from squatpose.squat.analyze import Tracked, analyze_tracks
from squatpose.squat.settings import Settings

CLIP = REPO / "tests" / "data" / "squat-side-gym-clip.mp4"  # 80 frames of the side-view gym video, 152x270
BOX = "45,75,60,160"  # the lifter in the clip's first frame
FPS = 30.0


def squatpose(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "squatpose.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def model_pt(tmp_path_factory) -> Path:
    """An untrained dilated net at 96x128 crops (a quick stand-in: what it finds does not matter here)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    meta = {"model": "dilated", "row": "dilated-test", "crop": {"width": 96, "height": 128, "padding": 1.25},
            "codec": {"kind": "heatmap", "stride": 4, "split": 2.0, "sigma": 1.0, "decoding": "dark"}}
    save_checkpoint(path, build("dilated", codec_from_meta(meta)), meta)
    return path


@pytest.mark.slow
def test_video_end_to_end_writes_every_output(tmp_path, model_pt):
    out = tmp_path / "out"
    run = squatpose("analyze", str(CLIP), "--model", str(model_pt), "--box", BOX, "--out", str(out),
                    "--confidence", "0", "--quiet", "--beta", "15", "--min-cutoff", "0.8", "--d-cutoff", "1.5",
                    "--depth-in", "40", "--depth-out", "12", "--view", "side")
    assert run.returncode == 0, run.stderr
    assert f"{CLIP}: 80 frames analysed (80 with confident joints)" in run.stdout
    table = pd.read_csv(out / "frames.csv")
    assert len(table) == 80 and table["frame"].tolist() == list(range(80))
    for col in ("left_knee_x", "left_knee_conf", "left_knee_confident", "left_knee_raw_x", "knee_angle_left",
                "thigh_angle_right", "valgus_left", "knee_angle", "rep", "phase", "box_w"):
        assert col in table.columns
    assert table["box_w"].eq(60).all() and table["box_x"].iloc[0] == 45
    # frame 0's confidences are the model's own on the box's crop (in some order: swaps may relabel)
    model = load_pose_model(model_pt)
    frame = cv2.cvtColor(cv2.VideoCapture(str(CLIP)).read()[1], cv2.COLOR_BGR2RGB)
    m = crop_person(np.array([[45, 75, 60, 160]]), model.crop)[0]
    _, conf = model.codec.decode(model.outputs(warp(frame, m, model.crop.width, model.crop.height)[None]))
    written = table.loc[0, [f"{n}_conf" for n in NAMES]].to_numpy(float)
    np.testing.assert_allclose(np.sort(written), np.sort(conf[0]), atol=5e-4 + 1e-6)  # frames.csv: 3 decimals
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_analysed"] == 80 and summary["fps"] == pytest.approx(29.97 / 2, abs=0.01)
    assert summary["model"] == {"path": str(model_pt), "backend": "torch", "architecture": "dilated",
                                "row": "dilated-test", "crop": {"width": 96, "height": 128, "padding": 1.25}}
    assert summary["settings"]["box"] == [45, 75, 60, 160] and summary["settings"]["confidence"] == 0
    assert summary["settings"]["one_euro"] == {"min_cutoff": 0.8, "beta": 15.0, "d_cutoff": 1.5, "max_gap_s": 0.5}
    assert summary["settings"]["reps"]["depth_in"] == 40 and summary["settings"]["reps"]["depth_out"] == 12
    assert summary["settings"]["view"] == "side" and summary["view"] == "side"
    assert summary["outputs"] == ["frames.csv", "knee_angle.png", "overlay.mp4", "summary.json"]
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 80
    assert (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (152, 270)
    ok, first = video.read()
    original = cv2.VideoCapture(str(CLIP)).read()[1]
    assert ok and np.abs(first.astype(int) - original).mean() > 1  # something is drawn on it
    plot = cv2.imread(str(out / "knee_angle.png"))
    assert plot.shape == (400, 1000, 3)
    assert not list(out.glob(".*"))  # no temporary files left


@pytest.mark.slow
def test_onnx_backend_gives_the_same_joints(tmp_path, model_pt):
    runs = {}
    for backend in ("torch", "onnx"):
        run = squatpose("analyze", str(CLIP), "--model", str(model_pt), "--box", BOX, "--out",
                        str(tmp_path / backend), "--backend", backend, "--quiet")
        assert run.returncode == 0, run.stderr
        runs[backend] = pd.read_csv(tmp_path / backend / "frames.csv")
    cols = [c for c in runs["torch"].columns if c.endswith(("_raw_x", "_raw_y"))]
    diff = np.abs(runs["torch"][cols].to_numpy() - runs["onnx"][cols].to_numpy())
    assert np.median(diff) == 0 and diff.max() < 2  # at most a quarter-pixel shift flipped by a tie (crop px x scale)
    assert json.loads((tmp_path / "onnx" / "summary.json").read_text())["model"]["backend"] == "onnx"


@pytest.mark.slow
def test_untrained_model_is_reported_not_guessed(tmp_path, model_pt):
    out = tmp_path / "out"
    run = squatpose("analyze", str(CLIP), "--model", str(model_pt), "--box", BOX, "--out", str(out), "--quiet")
    assert run.returncode == 0, run.stderr
    assert "no joint reached the confidence threshold 0.3 in any frame" in run.stdout
    table = pd.read_csv(out / "frames.csv")
    assert table["knee_angle"].isna().all() and table["left_knee_x"].isna().all()
    assert table["left_knee_raw_x"].notna().all()  # what the model said is still there to look at


def test_image_gives_an_overlay_picture(tmp_path, model_pt):
    image = sorted((SAMPLE / "val2017").glob("*.jpg"))[0]
    run = squatpose("analyze", str(image), "--model", str(model_pt), "--box", "100,100,200,300",
                    "--out", str(tmp_path), "--confidence", "0")
    assert run.returncode == 0, run.stderr
    assert len(pd.read_csv(tmp_path / "frames.csv")) == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["kind"] == "image" and summary["reps"] == []
    assert cv2.imread(str(tmp_path / "overlay.png")).shape[:2] == cv2.imread(str(image)).shape[:2]


def tracked_from(xy: np.ndarray, seen: np.ndarray) -> Tracked:
    """Joint tracks as the model would hand them over: every joint a position, confidence 0.9
    where the annotator saw it and 0.05 elsewhere (its position then is junk)."""
    kp = np.where(np.isnan(xy), 0.0, xy)
    box = np.array([np.nanmin(xy[..., 0]) - 20, np.nanmin(xy[..., 1]) - 60, 150, 300])
    return Tracked(kp, np.where(seen, 0.9, 0.05), np.tile(box, (len(xy), 1)), np.full(len(xy), box[3] * 1.25 / 128))


def test_analysis_of_real_side_view_tracks():
    xy, bottoms = penn_sequence(["1708", "1795", "1832", "1796"])
    result = analyze_tracks(tracked_from(xy, ~np.isnan(xy[..., 0])), FPS, Settings(view="side"))
    s = result.summary
    assert s["view"] == "side" and s["legs_reported"] == ["right"]
    assert [r["number"] for r in s["reps"]] == [1, 2, 3, 4]
    assert all(abs(r["bottom"] - b) <= 4 for r, b in zip(s["reps"], bottoms))
    first = s["reps"][0]
    assert first["left_knee_angle_at_bottom"] is None and 40 < first["right_knee_angle_at_bottom"] < 65
    assert first["depth"] == "unsure" and first["right_thigh_angle_unc_at_bottom"] is None  # no calibration: no verdict
    assert len([f for f in s["feedback"] if f.startswith("rep 1:")]) >= 1
    assert result.table["knee_angle_left"].isna().all()  # the far leg is not reported
    assert set(result.table.loc[result.table["rep"] == 2, "phase"]) == {"descent", "ascent"}


def test_person_leaving_the_frame_keeps_what_came_before():
    xy, bottoms = penn_sequence(["1708", "1795", "1744"])
    seen = ~np.isnan(xy[..., 0])
    gone = bottoms[1] + 40  # after the second rep the person walks out
    seen[gone:] = False
    result = analyze_tracks(tracked_from(xy, seen), FPS, Settings(view="side"))
    s = result.summary
    assert len(s["reps"]) == 2 and len(result.table) == len(xy)
    assert f"frames {gone}-{len(xy) - 1}: no confident joint (person out of view, or the model unsure)" in s["messages"]
    assert result.table["knee_angle"].iloc[gone:].isna().all()


def test_front_view_tracks_give_valgus_and_both_legs():
    c = penn_clips()["1739"]
    result = analyze_tracks(tracked_from(c["xy"], c["vis"]), FPS, Settings())
    s = result.summary
    assert s["view"] == "front" and s["legs_reported"] == ["left", "right"] and len(s["reps"]) == 1
    rep = s["reps"][0]
    at_bottom = result.table.iloc[rep["bottom"]]
    assert rep["left_valgus_at_bottom"] == pytest.approx(at_bottom["valgus_left"])
    assert rep["asymmetry_deg"] == pytest.approx(abs(at_bottom["knee_angle_left"] - at_bottom["knee_angle_right"]))
    assert abs(rep["bottom"] - c["bottom_frames"][0]) <= 3


# Bad input: one line naming the file, exit 1, nothing written over.

def error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 1 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    return lines[0]


@pytest.mark.slow
def test_bad_inputs(tmp_path, model_pt):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    assert f"{text}: not an image or a video OpenCV can read" in error_line(
        squatpose("analyze", str(text), "--model", str(model_pt), "--box", BOX, "--out", str(tmp_path / "o")))
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 64))
    writer.release()
    assert str(empty) in error_line(squatpose("analyze", str(empty), "--model", str(model_pt), "--box", BOX))
    broken = tmp_path / "broken.pt"
    broken.write_bytes(model_pt.read_bytes()[:3000])
    assert f"{broken}: not a squatpose checkpoint" in error_line(
        squatpose("analyze", str(CLIP), "--model", str(broken), "--box", BOX))
    assert "lies outside the 152x270 frame (0% inside)" in error_line(
        squatpose("analyze", str(CLIP), "--model", str(model_pt), "--box", "500,500,50,80"))
    assert "--box '1,2,3': expected x,y,w,h" in error_line(
        squatpose("analyze", str(CLIP), "--model", str(model_pt), "--box", "1,2,3"))
    assert "need 0 < depth_out < depth_in" in error_line(
        squatpose("analyze", str(CLIP), "--model", str(model_pt), "--box", BOX, "--depth-in", "10"))
    assert "min_cutoff and d_cutoff must be > 0" in error_line(
        squatpose("analyze", str(CLIP), "--model", str(model_pt), "--box", BOX, "--min-cutoff", "0"))
    jpeg = tmp_path / "cut.jpg"
    jpeg.write_bytes((SAMPLE / "val2017" / "000000000139.jpg").read_bytes()[:4000])
    assert f"{jpeg}: cannot decode image (truncated JPEG" in error_line(
        squatpose("analyze", str(jpeg), "--model", str(model_pt), "--box", BOX))
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(claiming_size((SAMPLE / "val2017" / "000000000139.jpg").read_bytes(), 9000, 9000))
    assert f"{bomb}: image of 9000x9000 pixels is over the 50-megapixel limit" in error_line(
        squatpose("analyze", str(bomb), "--model", str(model_pt), "--box", BOX))
    assert "input not found" in error_line(squatpose("analyze", str(tmp_path / "nope.mp4"), "--model",
                                                     str(model_pt), "--box", BOX))
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_bad_input_leaves_earlier_results_alone(tmp_path, model_pt):
    out = tmp_path / "out"
    assert squatpose("analyze", str(CLIP), "--model", str(model_pt), "--box", BOX, "--out", str(out),
                     "--quiet").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    text = tmp_path / "x.mov"
    text.write_text("junk")
    error_line(squatpose("analyze", str(text), "--model", str(model_pt), "--box", BOX, "--out", str(out)))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_detector_offline_is_one_line_saying_where_the_weights_go(tmp_path, monkeypatch, capsys, model_pt):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(SystemExit) as e:
        cli.main(["analyze", str(CLIP), "--model", str(model_pt), "--out", str(tmp_path / "o")])
    assert e.value.code == 1
    msg = capsys.readouterr().err.strip()
    assert "\n" not in msg and "fasterrcnn_mobilenet_v3_large_fpn" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg and "--box x,y,w,h" in msg


@pytest.mark.slow
def test_detector_uses_weights_placed_by_hand_only_if_their_hash_matches(tmp_path, monkeypatch):
    import hashlib

    from torchvision.models import detection

    from squatpose.squat import boxes
    from squatpose.squat.boxes import PersonDetector

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: pytest.fail("the detector tried to download"))
    torch.manual_seed(0)
    weights = tmp_path / "weights.pth"
    torch.save(detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).state_dict(), weights)
    # under the official file name, these (untrained) weights are refused: their hash is not the official one
    official = tmp_path / "hub" / "checkpoints" / Path(boxes.DETECTOR_URL).name
    official.parent.mkdir(parents=True)
    official.write_bytes(weights.read_bytes())
    with pytest.raises(SquatposeError, match=f"{official}: SHA-256 [0-9a-f]{{8}}... is not that of the"):
        PersonDetector()
    official.unlink()
    # a file whose name carries its own hash prefix (as torchvision's do) is loaded
    prefix = hashlib.sha256(weights.read_bytes()).hexdigest()[:8]
    monkeypatch.setattr(boxes, "DETECTOR_URL", f"https://example.invalid/{boxes.DETECTOR}-{prefix}.pth")
    weights.rename(official.with_name(f"{boxes.DETECTOR}-{prefix}.pth"))
    detector = PersonDetector(min_score=0.0)  # untrained weights: accept any score
    frame = cv2.cvtColor(cv2.VideoCapture(str(CLIP)).read()[1], cv2.COLOR_BGR2RGB)
    with torch.no_grad():
        out = detector.model([torch.from_numpy(frame).permute(2, 0, 1).float() / 255])[0]
    people = out["boxes"][out["labels"] == 1]
    box = detector.detect(frame)
    if len(people):  # the untrained head may or may not call something a person
        x1, y1, x2, y2 = people[0].tolist()
        np.testing.assert_allclose(box, [x1, y1, x2 - x1, y2 - y1], rtol=1e-5)
    else:
        assert box is None


def test_a_run_stopped_midway_by_a_decoder_error_keeps_the_frames_done(tmp_path, model_pt, monkeypatch):
    import squatpose.squat.analyze as analyze_module
    from squatpose.squat.boxes import parse_box

    real = analyze_module.frames

    def twelve_then_stop(source):
        for i, frame in enumerate(real(source)):
            if i == 12:
                raise RuntimeError("decoder lost sync")
            yield frame

    monkeypatch.setattr(analyze_module, "frames", twelve_then_stop)
    out = tmp_path / "out"
    result = analyze_module.analyze(CLIP, load_pose_model(model_pt), out, parse_box(BOX),
                                    settings=Settings(confidence=0.0), progress=False)
    assert len(result.table) == 12
    assert any(m.startswith("stopped at frame 12 (RuntimeError") for m in result.summary["messages"])
    assert len(pd.read_csv(out / "frames.csv")) == 12
    assert int(cv2.VideoCapture(str(out / "overlay.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 12


@pytest.mark.slow
def test_ctrl_c_keeps_the_earlier_complete_result_and_exits_non_zero(tmp_path, model_pt):
    """A real SIGINT to the command while it tracks: the complete earlier analysis stays byte for
    byte, the frames done go to <out>-partial, the exit code is 130 and one line says so."""
    video = tmp_path / "long.mp4"  # the clip five times over: 400 frames, time to interrupt it
    clip = cv2.VideoCapture(str(CLIP))
    frames = [f for ok, f in iter(clip.read, (False, None)) if ok]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), FPS, frames[0].shape[1::-1])
    for f in frames * 5:
        writer.write(f)
    writer.release()
    out = tmp_path / "out"
    args = ["analyze", str(video), "--model", str(model_pt), "--box", BOX, "--out", str(out)]
    assert squatpose(*args, "--quiet").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # SIGINT back to its default in the child: a shell that starts the test run in the background
    # (CI, nohup ... &) ignores it, and Python would then never raise KeyboardInterrupt
    proc = subprocess.Popen([sys.executable, "-m", "squatpose.cli", *args], stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    while b"/400 [" not in seen or int(seen.rsplit(b"/400 [", 1)[0].rsplit(b"|", 1)[-1]) < 20:
        byte = proc.stderr.read(1)
        assert byte, f"ended before 20 frames: {seen[-300:]!r}"
        seen += byte
    proc.send_signal(signal.SIGINT)
    err = (seen + proc.communicate(timeout=120)[1]).decode()
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: after ") and last.endswith(f"{out}/ is left as it was"), last
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    partial = pd.read_csv(tmp_path / "out-partial" / "frames.csv")
    assert 20 <= len(partial) < 400
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_out_that_cannot_take_an_analysis_is_refused_before_any_work(tmp_path, model_pt):
    afile = tmp_path / "report.txt"
    afile.write_text("mine")
    assert f"{afile}: --out is a file, not a folder" in error_line(
        squatpose("analyze", str(CLIP), "--model", str(model_pt), "--box", BOX, "--out", str(afile)))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    assert f"{mine}: --out holds files that are not an analysis's (thesis.tex)" in error_line(
        squatpose("analyze", str(CLIP), "--model", str(model_pt), "--box", BOX, "--out", str(mine)))
    assert afile.read_text() == "mine" and [p.name for p in mine.iterdir()] == ["thesis.tex"]
