"""Smoothing, left/right swaps, camera view, near leg and squat measures on real squat tracks."""

import glob

import numpy as np
import pytest

from conftest import SHARED, penn_clips
from squatpose.angles import knee_valgus, thigh_angles
from squatpose.joints import FLIP_INDEX
from squatpose.squat import kinematics, tracks
from squatpose.squat.smoothing import OneEuro, jitter, static_frames

FPS = 30.0
CLIPS = penn_clips()


def test_one_euro_removes_jitter_from_a_still_joint_and_follows_a_moving_one():
    rng = np.random.default_rng(1)
    t = np.arange(120) / FPS
    still = 100 + rng.normal(0, 2, (120, 2))  # 2 % of a 100 px leg
    out = OneEuro()(t, still, scale=100)
    assert np.abs(np.diff(out[30:], axis=0)).mean() < 0.4 * np.abs(np.diff(still[30:], axis=0)).mean()  # 0.31
    ramp = np.stack([np.linspace(0, 400, 120)] * 2, axis=1)  # 100 px/s
    lag = ramp - OneEuro()(t, ramp, scale=100)
    assert np.abs(lag[30:]).max() < 4  # the speed term keeps the lag under a few pixels
    assert np.abs(ramp - OneEuro(beta=0)(t, ramp, scale=100))[30:].max() > 10  # without it: lag


def test_one_euro_keeps_gaps_empty_is_causal_and_restarts_after_long_gaps():
    t = np.arange(60) / FPS
    x = np.sin(t)[:, None] * 50
    x[10:13] = np.nan
    x[30:50] = np.nan  # 0.67 s: longer than max_gap_s
    f = OneEuro()
    out = f(t, x)
    assert np.isnan(out[10:13]).all() and np.isnan(out[30:50]).all()
    assert out[50, 0] == x[50, 0]  # restarted: the first value after a long gap passes unchanged
    changed = x.copy()
    changed[40:] += 100
    np.testing.assert_array_equal(f(t, changed)[:30], out[:30])


def test_smoothing_cuts_jitter_of_a_real_track_with_noise():
    xy = CLIPS["1832"]["xy"]
    t = np.arange(len(xy)) / FPS
    rng = np.random.default_rng(2)
    leg = np.nanmedian(np.linalg.norm(xy[:, 0] - xy[:, 4], axis=-1))
    noisy = xy + rng.normal(0, 0.015 * leg, xy.shape)
    smooth = OneEuro()(t, noisy, scale=leg)
    err_noisy = np.nanmean(np.linalg.norm(noisy - xy, axis=-1))
    err_smooth = np.nanmean(np.linalg.norm(smooth - xy, axis=-1))
    assert err_smooth < 0.85 * err_noisy
    curve = kinematics.measures(smooth, "side", ("right",))["knee_angle"].to_numpy()
    clean = kinematics.measures(xy, "side", ("right",))["knee_angle"].to_numpy()
    assert abs(np.nanargmin(curve) - np.nanargmin(clean)) <= 3
    assert abs(np.nanmin(curve) - np.nanmin(clean)) < 10


def test_still_frames_are_found_with_the_far_leg_hidden():
    xy = CLIPS["1708"]["xy"]  # left leg never visible
    still = static_frames(np.concatenate([np.repeat(xy[:1], 40, axis=0), xy]), leg_scale(xy), FPS)
    assert still[15:25].all() and not still[60:].any()


def test_jitter_is_measured_on_the_still_stretch_only():
    rng = np.random.default_rng(3)
    t = np.arange(200) / FPS
    xy = np.zeros((200, 6, 2))
    xy[100:, :, 0] = np.linspace(0, 300, 100)[:, None]  # still, then moving 90 px/s
    xy += rng.normal(0, 1, xy.shape)
    still = static_frames(xy, scale=100, fps=FPS)
    assert still[20:80].all() and not still[110:190].any()
    raw, smooth = jitter(xy, still, 100), jitter(OneEuro()(t, xy, scale=100), still, 100)
    assert 0.01 < raw < 0.02  # E|N(0,1) - N(0,1)| in 2D ~ 1.8 px on a 100 px leg
    assert smooth < 0.4 * raw


def leg_scale(xy: np.ndarray) -> float:
    return float(np.nanmedian(np.linalg.norm(xy[:, 0:2] - xy[:, 4:6], axis=-1)))


def test_swapped_labels_are_put_back():
    xy = CLIPS["1832"]["xy"]  # side view, both legs labeled throughout
    rng = np.random.default_rng(4)
    swapped = xy.copy()
    frames = rng.random(len(xy)) < 0.3
    frames[0] = False  # the first frame decides which leg is which
    swapped[frames] = swapped[frames][:, list(FLIP_INDEX)]
    order = tracks.fix_swaps(swapped, leg_scale(xy))
    fixed = tracks.apply_order(swapped, order)
    assert (np.abs(fixed - xy) < 1e-9).all(axis=(1, 2)).mean() > 0.95
    assert (order[frames] != np.arange(6)).any(1).mean() > 0.9
    conf = np.tile(np.arange(6.0), (len(xy), 1))
    conf[frames] = conf[frames][:, list(FLIP_INDEX)]
    assert (tracks.apply_order(conf, order) == np.arange(6.0)).all(1).mean() > 0.95  # confidences follow
    untouched = tracks.fix_swaps(xy, leg_scale(xy))
    assert (untouched == np.arange(6)).all()


@pytest.mark.parametrize("clip", ["1739", "1686", "1832"])
def test_correct_tracks_stay_as_they_are_even_when_a_joint_first_shows_alone(clip):
    xy = CLIPS[clip]["xy"].copy()
    xy[:10, [1, 3, 5]] = np.nan  # the right leg appears only at frame 10, and its ankle alone first
    xy[10:12, [1, 3]] = np.nan
    assert (tracks.fix_swaps(xy, leg_scale(CLIPS[clip]["xy"])) == np.arange(6)).all()


def test_a_lone_joint_labeled_as_the_hidden_leg_goes_back_to_its_own_side():
    xy = CLIPS["1708"]["xy"].copy()  # only the right leg is visible
    bad = xy.copy()
    bad[10:20, [0, 2, 4]] = bad[10:20, [1, 3, 5]]  # the model calls it "left" for ten frames
    bad[10:20, [1, 3, 5]] = np.nan
    fixed = tracks.apply_order(bad, tracks.fix_swaps(bad, leg_scale(xy)))
    np.testing.assert_allclose(fixed[10:20, [1, 3, 5]], xy[10:20, [1, 3, 5]])
    assert np.isnan(fixed[10:20, [0, 2, 4]]).all()


@pytest.mark.parametrize("clip, leg", [("1708", "right"), ("1744", "left"), ("1795", "right"), ("1702", "right")])
def test_near_leg_is_the_visible_one(clip, leg):
    c = CLIPS[clip]
    assert tracks.near_leg(c["xy"], c["vis"].astype(float)) == leg


def test_camera_view_of_clear_cases():
    assert tracks.camera_view(CLIPS["1708"]["xy"]) == "side"  # far leg hidden
    assert tracks.camera_view(CLIPS["1739"]["xy"]) == "front"
    assert tracks.camera_view(CLIPS["1686"]["xy"]) == "front"


@pytest.mark.skipif(not (SHARED / "penn-action-squat").is_dir(), reason="needs ../shared/data/penn-action-squat")
def test_camera_view_accuracy_on_all_penn_action_squat_clips():
    from scipy.io import loadmat

    right = total = 0
    for path in sorted(glob.glob(str(SHARED / "penn-action-squat" / "*.mat"))):
        m = loadmat(path)
        legs = [7, 8, 9, 10, 11, 12]  # Penn's 1-based 8..13: L hip, R hip, L knee, R knee, L ankle, R ankle
        xy = np.stack([m["x"].astype(float)[:, legs], m["y"].astype(float)[:, legs]], axis=-1)
        xy[m["visibility"][:, legs] == 0] = np.nan
        truth = "front" if str(m["pose"][0]) in ("front", "back") else "side"
        right += tracks.camera_view(xy) == truth
        total += 1
    assert total == 114 and right / total >= 0.75  # 88 / 114 when written


def test_thigh_angle_and_valgus_conventions():
    kp = np.zeros((3, 6, 2))
    kp[:, [0, 2, 4], 0], kp[:, [1, 3, 5], 0] = 120.0, 80.0  # left leg at image right: seen from the front
    kp[:, 2:4, 1], kp[:, 4:6, 1] = 150.0, 200.0
    kp[:, 0:2, 1] = [[100.0], [150.0], [170.0]]  # hips above, level with, below the knees
    kp[1, 0:2, 0] = [150.0, 50.0]  # thigh horizontal
    th = thigh_angles(kp)
    np.testing.assert_allclose(th["left"], [90, 0, -90], atol=1e-9)
    kp[0, [2, 3], 0] = [112.0, 88.0]  # both knees 8 px toward the midline
    v = knee_valgus(kp[:1])
    np.testing.assert_allclose([v["left"][0], v["right"][0]], [0.08, 0.08])
    mirrored = kp[:1].copy()
    mirrored[..., 0] = 200 - mirrored[..., 0]
    v2 = knee_valgus(mirrored[:, list(FLIP_INDEX)])
    np.testing.assert_allclose([v2["left"][0], v2["right"][0]], [0.08, 0.08])


def test_front_view_knee_angle_estimate_tracks_the_squat():
    xy = CLIPS["1739"]["xy"]  # front view: the 2D hip-knee-ankle angle says little
    m = kinematics.measures(xy, "front", ("left", "right"))
    assert m["knee_angle_left"].iloc[:3].min() > 135 and m["knee_angle_left"].iloc[32:37].max() < 60
    assert np.isfinite(m["valgus_left"]).all() and np.abs(m["valgus_left"]).max() < 0.3
    side = kinematics.measures(xy, "side", ("left",))
    assert side["valgus_left"].isna().all() and side["knee_angle_right"].isna().all()


def test_a_misplaced_joint_gives_no_angle_instead_of_a_wrong_one():
    xy = CLIPS["1708"]["xy"].copy()  # right leg visible throughout
    clean = kinematics.measures(xy, "side", ("right",))["knee_angle_right"].to_numpy()
    xy[20:23, 3] = xy[20:23, 1] + [3.0, 2.0]  # the model puts the knee on the hip
    xy[40, 5] = xy[40, 1] + [-5.0, 4.0]  # and the ankle beside the hip
    m = kinematics.measures(xy, "side", ("right",))["knee_angle_right"].to_numpy()
    assert np.isnan(m[20:23]).all() and np.isnan(m[40])
    keep = np.r_[0:20, 23:40, 41:len(xy)]
    np.testing.assert_allclose(m[keep], clean[keep])


def test_a_model_that_stacks_both_legs_is_seen_from_the_side():
    xy = CLIPS["1708"]["xy"].copy()
    xy[:, [0, 2, 4]] = xy[:, [1, 3, 5]] + 2.0  # both legs predicted on top of each other
    assert tracks.camera_view(xy) == "side"
