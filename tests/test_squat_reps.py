"""Repetitions and feedback on real squat tracks (Penn Action), clean, noisy and with dropped frames."""

import numpy as np
import pytest

from conftest import at_bottom, penn_clips, penn_sequence
from squatpose.squat import kinematics, tracks
from squatpose.squat.feedback import rep_feedback
from squatpose.squat.reps import Rep, RepSettings, bridge_gaps, segment_reps
from squatpose.squat.smoothing import OneEuro

FPS = 30.0
CLIPS = penn_clips()


def knee_curve(xy: np.ndarray, view: str) -> np.ndarray:
    """The curve analysis segments: the near leg's knee angle (side) or both legs' estimate (front)."""
    legs = (tracks.near_leg(xy, (~np.isnan(xy[..., 0])).astype(float)),) if view == "side" else ("left", "right")
    return kinematics.measures(xy, view, legs)["knee_angle"].to_numpy()


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_rep_count_of_each_real_clip_matches_the_hand_count(clip):
    c = CLIPS[clip]
    curve = knee_curve(c["xy"], c["view"])
    seg = segment_reps(np.arange(len(curve)) / FPS, curve)
    assert len(seg.reps) == c["reps"], (clip, [(r.start, r.bottom, r.end) for r in seg.reps])
    assert len(seg.partial) == c["partial_reps"]
    for rep, bottom in zip(seg.reps, c["bottom_frames"]):
        assert abs(rep.bottom - bottom) <= 3
        assert rep.start < rep.bottom < rep.end
        assert rep.descent_s == pytest.approx((rep.bottom - rep.start) / FPS)
        assert rep.ascent_s == pytest.approx((rep.end - rep.bottom) / FPS)


def test_side_view_knee_angle_at_the_bottom_is_the_measured_one():
    c = CLIPS["1708"]  # right leg always visible, left never: the near leg is the right one
    curve = knee_curve(c["xy"], "side")
    seg = segment_reps(np.arange(len(curve)) / FPS, curve)
    h, k, a = c["xy"][25, 1], c["xy"][25, 3], c["xy"][25, 5]
    u, v = h - k, a - k
    by_hand = np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
    assert seg.reps[0].bottom == 25
    assert seg.reps[0].min_knee_angle == pytest.approx(by_hand, abs=1e-6)
    assert 45 < by_hand < 55


# one person per sequence: side clips that all show the right leg
SEQUENCES = {"side": ["1708", "1795", "1832", "1796"], "front": ["1686", "1739", "1735"]}


@pytest.mark.parametrize("view", sorted(SEQUENCES))
def test_several_reps_in_a_row(view):
    xy, bottoms = penn_sequence(SEQUENCES[view])
    curve = knee_curve(xy, view)
    seg = segment_reps(np.arange(len(curve)) / FPS, curve)
    assert [r.number for r in seg.reps] == list(range(1, len(bottoms) + 1))
    assert all(abs(r.bottom - b) <= 3 for r, b in zip(seg.reps, bottoms))
    assert all(a.end <= b.start for a, b in zip(seg.reps, seg.reps[1:]))


@pytest.mark.parametrize("view", sorted(SEQUENCES))
def test_noise_and_dropped_frames_do_not_change_the_count(view):
    xy, bottoms = penn_sequence(SEQUENCES[view])
    rng = np.random.default_rng(0)
    leg = np.nanmedian(np.linalg.norm(xy[:, 0:2] - xy[:, 4:6], axis=-1))
    noisy = xy + rng.normal(0, 0.02 * leg, xy.shape)  # 2 % of the leg length per coordinate
    dropped = rng.random(len(xy)) < 0.2  # a fifth of the frames missed, at random
    dropped[bottoms[1] - 4:bottoms[1] + 4] = True  # and 8 frames in a row at a bottom
    noisy[dropped] = np.nan
    t = np.arange(len(xy)) / FPS
    smooth = OneEuro()(t, noisy, scale=leg)
    seg = segment_reps(t, knee_curve(smooth, view))
    assert len(seg.reps) == len(bottoms)
    assert all(abs(r.bottom - b) <= 6 for r, b in zip(seg.reps, bottoms))
    assert seg.reps[1].missing_frames >= 8


def test_hysteresis_counts_a_wobble_at_the_threshold_once():
    t = np.arange(300) / FPS
    curve = 170 - 35 * np.sin(np.pi * t / t[-1]) ** 2  # one slow shallow rep: down to 135 degrees
    curve[100:200] += 8 * np.sin(2 * np.pi * 3 * t[100:200])  # +-8 degrees around it, 3 times a second
    standing = np.percentile(curve, 90)
    low = standing - 35
    crossings = np.sum((curve[1:] < low) & (curve[:-1] >= low))
    assert crossings >= 3  # a single threshold would count three reps or more
    seg = segment_reps(t, curve, RepSettings(depth_in=35, depth_out=15))
    assert len(seg.reps) == 1 and seg.partial == []


def test_clip_cut_off_mid_rep_gives_a_partial_not_a_rep():
    c = CLIPS["1807"]
    curve = knee_curve(c["xy"], "side")
    t = np.arange(len(curve)) / FPS
    full = segment_reps(t, curve)
    assert len(full.reps) == 1 and len(full.partial) == 1 and full.partial[0][1] == len(curve) - 1
    late = segment_reps(t[30:], curve[30:])  # starts near the bottom of the rep
    assert late.reps == [] and late.partial[0][0] == 0
    for clip in ("1708", "1744", "1795"):  # each cut where it is 28 degrees down: under the midpoint (25)
        curve = knee_curve(CLIPS[clip]["xy"], "side")
        t = np.arange(len(curve)) / FPS
        cut = int(np.flatnonzero(curve < segment_reps(t, curve).standing_angle - 28)[0])
        late = segment_reps(t[cut:], curve[cut:])
        assert late.reps == [] and len(late.partial) == 1 and late.partial[0][0] == 0


def test_gaps_are_bridged_only_up_to_the_limit():
    t = np.arange(10) / 10
    y = np.array([0, np.nan, np.nan, 3, np.nan, np.nan, np.nan, np.nan, np.nan, 9], float)
    out = bridge_gaps(t, y, max_gap_s=0.3)
    np.testing.assert_allclose(out[:4], [0, 1, 2, 3])
    assert np.isnan(out[4:9]).all()


def test_empty_curve_has_no_reps():
    seg = segment_reps(np.arange(5) / FPS, np.full(5, np.nan))
    assert seg.reps == [] and np.isnan(seg.standing_angle)


def rep(view: str = "side", legs: tuple[str, ...] = ("right",), **values) -> Rep:
    """A rep whose bottom measures are `values` (e.g. right_thigh_angle=(12.0, 2.0): value, +-)."""
    return Rep(3, 0, 20, 40, 0.0, 0.66, 1.33, 70.0, 0.66, 0.67, 0, at_bottom(view, legs, **values))


def test_feedback_sentences_say_what_was_seen():
    assert rep_feedback(rep(right_thigh_angle=(12.0, 2.0))) == ["rep 3: above parallel (thigh 12° ±2° above horizontal)"]
    assert rep_feedback(rep(right_thigh_angle=(-5.0, 1.0)))[0] == "rep 3: parallel reached (thigh 5° ±1° below horizontal)"
    assert rep_feedback(rep(right_thigh_angle=(-0.2, 0.1)))[0] == \
        "rep 3: parallel reached (thigh 0.2° ±0.1° below horizontal)"
    assert rep_feedback(rep(right_thigh_angle=(0.3, 0.1)))[0] == "rep 3: above parallel (thigh 0.3° ±0.1° above horizontal)"
    assert rep_feedback(rep(right_thigh_angle=(0.3, 1.0)))[0].startswith("rep 3: depth not judged")
    assert rep_feedback(rep())[0].startswith("rep 3: depth unknown")
    front = rep("front", ("left", "right"), left_thigh_angle=(-2.0, 1.0), right_thigh_angle=(-3.0, 1.0),
                left_valgus=(0.15, 0.02), right_valgus=(0.02, 0.02), left_knee_angle=(70.0, 2.0),
                right_knee_angle=(85.0, 2.0))
    said = rep_feedback(front)
    assert said[0] == "rep 3: parallel reached (thigh 2° ±1° below horizontal)"  # the higher thigh decides
    assert "rep 3: left knee caves in (15% ±2% of leg length inside the hip-ankle line)" in said
    assert "rep 3: left knee bends 15° ±3° more than the other at the bottom" in said
    assert not any("right knee" in s for s in said)
    fast = Rep(1, 0, 9, 40, 0.0, 0.3, 1.33, 70.0, 0.3, 1.0, 0, rep(right_thigh_angle=(-1.0, 0.5)).at_bottom)
    assert rep_feedback(fast)[-1] == "rep 1: fast descent (0.3 s): control the way down"
