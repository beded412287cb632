"""The uncertainty of angles (calibration of joint errors against confidence, propagation by
drawing those errors) and the rule that feedback abstains when a value does not clear its
threshold by more than its uncertainty, on real squat tracks (Penn Action) with noise."""

import numpy as np
import pytest

from conftest import at_bottom, penn_sequence
from squatpose.joints import NAMES
from squatpose.squat import kinematics
from squatpose.squat.analyze import Tracked, analyze_tracks
from squatpose.squat.settings import Settings
from squatpose.squat.feedback import FeedbackRules, depth_sentence, judge, rep_feedback
from squatpose.squat.reps import Rep
from squatpose.squat.uncertainty import BINS, Calibration, angle_uncertainty, draw_errors, fit

FPS = 30.0


def error_scale(confidence: np.ndarray) -> np.ndarray:
    """Per-axis error (crop px) of a made-up model that is worse the less sure it is."""
    return 0.5 + 6.0 * (1 - confidence)


def synthetic_errors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 1.0, n)
    joint = rng.integers(0, len(NAMES), n)
    errors = rng.normal(size=(n, 2)) * error_scale(conf)[:, None]
    return errors, conf, joint


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    return fit(*synthetic_errors(6000, seed=0))


def test_fit_bins_by_confidence_and_covers_new_errors(calibration):
    errors, conf, joint = synthetic_errors(6000, seed=1)  # fresh draws of the same model
    for j in range(len(NAMES)):
        mine = joint == j
        radius = calibration.radius(conf[mine], j)
        covered = np.linalg.norm(errors[mine], axis=1) <= radius
        assert 0.8 <= covered.mean() <= 0.97  # about COVERAGE: bins are coarse in confidence
    low, high = calibration.radius(np.array([0.35]), 0), calibration.radius(np.array([0.95]), 0)
    assert low[0] > 3 * high[0]  # less sure -> farther off
    assert len(calibration.edges[0]) == BINS + 1


def test_calibration_round_trips_through_plain_meta(calibration):
    meta = calibration.to_meta()
    import json

    again = Calibration.from_meta(json.loads(json.dumps(meta)))  # plain types only
    assert again.edges == calibration.edges
    conf = np.linspace(0.3, 1, 7)
    np.testing.assert_allclose(again.radius(conf, 3), calibration.radius(conf, 3), atol=0.02)
    assert Calibration.from_meta(None) is None


def test_drawn_errors_follow_each_joints_confidence(calibration):
    conf = np.array([[0.95] * 6, [0.35] * 6])
    d = draw_errors(conf, calibration, draws=2000)
    assert d.shape == (2000, 2, 6, 2)
    sure, unsure = np.linalg.norm(d[:, 0], axis=-1).mean(), np.linalg.norm(d[:, 1], axis=-1).mean()
    assert unsure > 3 * sure


def side_track() -> tuple[np.ndarray, np.ndarray]:
    """Real side-view squats (four Penn Action clips, one person; right leg near: one rep well below
    parallel, one well above, two near it), joints NaN where unseen."""
    xy, _ = penn_sequence(["1807", "1796", "1762", "1708"])
    return xy, ~np.isnan(xy[..., 0])


def test_angle_uncertainty_grows_with_the_errors_and_is_zero_without(calibration):
    xy, seen = side_track()
    measure = lambda p: kinematics.measures(p, "side", ("right",))  # noqa: E731
    cols = ["knee_angle_right", "thigh_angle_right"]
    scale = np.full(len(xy), 3.0)
    exact = Calibration(calibration.edges, [[np.zeros((5, 2))] * BINS] * 3)
    sure = angle_uncertainty(measure, xy, np.where(seen, 0.95, 0.0), scale, calibration, cols, draws=100)
    unsure = angle_uncertainty(measure, xy, np.where(seen, 0.4, 0.0), scale, calibration, cols, draws=100)
    zero = angle_uncertainty(measure, xy, np.where(seen, 0.95, 0.0), scale, exact, cols, draws=20)
    known = np.isfinite(measure(xy)["knee_angle_right"].to_numpy())
    for c in cols:
        assert np.nanmax(zero[c]) == 0
        assert np.nanmedian(unsure[c][known]) > 2 * np.nanmedian(sure[c][known]) > 0
    none = angle_uncertainty(measure, xy, np.where(seen, 0.9, 0.0), scale, None, cols)
    assert np.isnan(none["knee_angle_right"]).all()


def noisy_tracked(xy: np.ndarray, seen: np.ndarray, calibration: Calibration, conf_range: tuple[float, float],
                  seed: int) -> Tracked:
    """The model's view of real tracks: each visible joint a confidence in `conf_range` and an error
    of that confidence drawn from `calibration` (crop px -> image px); unseen joints 0.05."""
    rng = np.random.default_rng(seed)
    conf = np.where(seen, rng.uniform(*conf_range, seen.shape), 0.05)
    box = np.array([np.nanmin(xy[..., 0]) - 20, np.nanmin(xy[..., 1]) - 60, 150, 300])
    scale = np.full(len(xy), box[3] * 1.25 / 128)  # a 96x128 crop of the box
    noise = draw_errors(conf, calibration, draws=1, seed=seed)[0] * scale[:, None, None]
    kp = np.where(np.isnan(xy), 0.0, xy) + noise
    return Tracked(kp, conf, np.tile(box, (len(xy), 1)), scale)


def clean_depths(xy: np.ndarray, seen: np.ndarray) -> dict[int, float]:
    """Rep bottom frame -> thigh angle at the bottom, as the analysis measures it on the labeled
    joints themselves (no model error): the truth the noisy analyses are judged against."""
    exact = Calibration([[-np.inf] + [0.2 * k for k in range(1, BINS)] + [np.inf]] * 3, [[np.zeros((1, 2))] * BINS] * 3)
    box = np.array([np.nanmin(xy[..., 0]) - 20, np.nanmin(xy[..., 1]) - 60, 150, 300])
    tracked = Tracked(np.where(np.isnan(xy), 0.0, xy), np.where(seen, 0.9, 0.05), np.tile(box, (len(xy), 1)),
                      np.full(len(xy), 3.0))
    result = analyze_tracks(tracked, FPS, Settings(view="side"), calibration=exact)
    side = result.summary["legs_reported"][0]
    return {r["bottom"]: r[f"{side}_thigh_angle_at_bottom"] for r in result.summary["reps"]}


def true_thigh(clean: dict[int, float], bottom: int) -> float | None:
    """The clean depth of the rep whose bottom is nearest, if within 10 frames."""
    nearest = min(clean, key=lambda b: abs(b - bottom))
    return clean[nearest] if abs(nearest - bottom) <= 10 else None


@pytest.mark.parametrize("seed", range(6))
def test_noisy_real_squats_are_never_judged_on_the_wrong_side_of_parallel(calibration, seed):
    """However noisy the joints, a rep that went clearly below parallel (as measured on the labels) is never called
    'above parallel', and one that stayed clearly above is never called 'parallel reached': with
    errors as large as the calibration says, the verdict abstains instead."""
    xy, seen = side_track()
    clean = clean_depths(xy, seen)
    result = analyze_tracks(noisy_tracked(xy, seen, calibration, (0.5, 0.95), seed), FPS, Settings(view="side"),
                            calibration=calibration)
    verdicts = []
    for rep in result.summary["reps"]:
        truth = true_thigh(clean, rep["bottom"])
        if truth is None:  # a dip the noise made: no truth to hold it to
            continue
        verdicts.append(rep["depth"])
        if truth <= -5:
            assert rep["depth"] != "above", (truth, rep["right_thigh_angle_at_bottom"], rep["right_thigh_angle_unc_at_bottom"])
        if truth >= 5:
            assert rep["depth"] != "parallel", (truth, rep)
        if rep["depth"] == "unsure":
            assert any(f.startswith(f"rep {rep['number']}: depth not judged:") for f in result.summary["feedback"])
    assert len(verdicts) >= 3


def test_a_sure_model_judges_depth_and_an_uncalibrated_one_does_not():
    """With small errors (a model five times as precise) the verdicts are given and right; the
    same tracks with no calibration give numbers but no verdict."""
    errors, conf, joint = synthetic_errors(6000, seed=0)
    sharp = fit(errors / 5, conf, joint)
    xy, seen = side_track()
    tracked = noisy_tracked(xy, seen, sharp, (0.9, 0.99), seed=0)
    result = analyze_tracks(tracked, FPS, Settings(view="side"), calibration=sharp)
    side = result.summary["legs_reported"][0]
    clean = clean_depths(xy, seen)
    judged = 0
    for rep in result.summary["reps"]:
        truth = true_thigh(clean, rep["bottom"])
        if truth is not None and abs(truth) > 10:
            assert rep["depth"] == ("parallel" if truth < 0 else "above"), (truth, rep)
            judged += 1
    assert judged >= 2
    assert np.isfinite(result.table[f"knee_angle_{side}_unc"]).mean() > 0.5
    bare = analyze_tracks(tracked, FPS, Settings(view="side"), calibration=None)
    assert all(r["depth"] in ("unsure", None) for r in bare.summary["reps"])
    assert any("its uncertainty is unknown (a model without calibration" in f for f in bare.summary["feedback"])
    assert bare.summary["uncertainty"].startswith("unknown")


def test_judge_and_sentences():
    assert judge(-10.0, 4.0, 0.0) == "below" and judge(-3.0, 4.0, 0.0) == "unsure"
    assert judge(6.0, 4.0, 0.0) == "above" and judge(3.0, None, 0.0) == "unsure" and judge(None, 1.0, 0.0) is None
    conf = {"right_hip": 0.41, "right_knee": 0.8}
    e = at_bottom("side", ("right",), conf, right_thigh_angle=(-3.0, 14.0))
    verdict, words = depth_sentence(e, FeedbackRules())
    assert verdict == "unsure"
    assert words == "depth not judged: right hip position uncertain (confidence 0.41) (thigh 3° ±14° below horizontal)"
    e = at_bottom("side", ("right",), conf, right_thigh_angle=(-20.0, 6.0))
    assert depth_sentence(e, FeedbackRules()) == ("parallel", "parallel reached (thigh 20° ±6° below horizontal)")
    e = at_bottom("side", ("right",), conf, right_thigh_angle=(25.0, 6.0))
    assert depth_sentence(e, FeedbackRules())[0] == "above"
    front = at_bottom("front", ("left", "right"), {n: 0.9 for n in NAMES},
                      left_thigh_angle=(-5.0, 2.0), right_thigh_angle=(-4.0, 2.0), left_valgus=(0.2, 0.03),
                      right_valgus=(0.12, 0.05), left_knee_angle=(70.0, 3.0), right_knee_angle=(90.0, 4.0))
    rep = Rep(2, 0, 10, 30, 0.0, 1.0, 2.0, 70.0, 1.0, 1.0, 0, front)
    assert rep_feedback(rep) == [
        "rep 2: parallel reached (thigh 4° ±2° below horizontal)",
        "rep 2: left knee caves in (20% ±3% of leg length inside the hip-ankle line)",
        "rep 2: right knee valgus not judged: right hip position uncertain (confidence 0.90) (12% ±5% of leg length)",
        "rep 2: left knee bends 20° ±5° more than the other at the bottom",
    ]
