"""Keypoint tracks over frames: left/right swaps undone, camera view and the near leg in a side view.

Tracks are (T, 6, 2) image pixels with NaN where a joint is not confident (joints.NAMES order).
"""

import numpy as np

from squatpose.angles import LEGS, leg_length
from squatpose.joints import FLIP_INDEX

SIDE_VIEW_MIN_KNEE_FORWARD = 0.6  # horizontal hip-knee distance / thigh length in a bent side view
SIDE_VIEW_MAX_HIP_WIDTH = 0.35  # hip distance / thigh length: front views on Penn Action are >= 0.6
SIDE_VIEW_MAX_BOTH_HIPS = 0.5  # both hips seen in under this fraction of frames with a hip: a side view
BENT = 0.75  # hip-ankle distance under this fraction of standing: a bent leg
STANDING_PERCENTILE = 90  # of a leg's hip-ankle distances (and thigh lengths): its standing value
MIN_FRAMES = 3  # frames a cue needs before it counts


def fix_swaps(xy: np.ndarray, scale: float, clear_ratio: float = 0.5, lone_limit: float = 0.25,
              memory: int = 30) -> np.ndarray:
    """Which label each joint of each frame really is: left/right swaps between frames undone,
    one joint pair (hips, knees, ankles) at a time.

    Each frame is compared with the last position seen of every joint (at most `memory` frames
    ago): a pair is swapped when the swapped assignment is nearer than `clear_ratio` x the given
    one. A joint seen without its partner moves to the other side only when it lies within
    `lone_limit` x `scale` (the leg length) of that side's last position and nearer to it than
    `clear_ratio` x its own side's (or its own side was not seen lately).
    Returns a (T, 6) index: `xy[t, order[t]]` are the fixed joints; apply it to anything per
    joint (confidences, raw positions) with `np.take_along_axis`.
    """
    xy = np.array(xy, np.float64)
    order = np.tile(np.arange(xy.shape[1]), (len(xy), 1))
    last = np.full(xy.shape[1:], np.nan)
    last_t = np.full(xy.shape[1], -np.inf)
    pairs = sorted({tuple(sorted((j, f))) for j, f in enumerate(FLIP_INDEX) if j != f})
    for t in range(len(xy)):
        recent = np.where((t - last_t <= memory)[:, None], last, np.nan)
        for a, b in pairs:
            pa, pb = xy[t, a], xy[t, b]
            seen_a, seen_b = ~np.isnan(pa).any(), ~np.isnan(pb).any()
            if seen_a and seen_b:
                keep = _dist(pa, recent[a]) + _dist(pb, recent[b])
                swap = _dist(pa, recent[b]) + _dist(pb, recent[a])
                do = swap < clear_ratio * keep  # False when either is unknown: no evidence, no change
            elif seen_a or seen_b:
                p, own, other = (pa, a, b) if seen_a else (pb, b, a)
                keep, swap = _dist(p, recent[own]), _dist(p, recent[other])
                do = swap < lone_limit * scale and not keep <= swap / clear_ratio
            else:
                continue
            if do:
                xy[t, [a, b]] = xy[t, [b, a]]
                order[t, [a, b]] = order[t, [b, a]]
        seen = ~np.isnan(xy[t]).any(-1)
        last[seen], last_t[seen] = xy[t, seen], t
    return order


def _dist(p: np.ndarray, q: np.ndarray) -> float:
    """Distance of two points; NaN when either is unknown."""
    return float(np.linalg.norm(p - q))


def apply_order(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """`values` (T, 6, ...) relabelled by a `fix_swaps` index."""
    idx = order.reshape(order.shape + (1,) * (values.ndim - 2))
    return np.take_along_axis(values, idx, axis=1)


def leg_seen(xy: np.ndarray) -> dict[str, np.ndarray]:
    """(T,) mask per side: hip, knee and ankle all known."""
    return {side: ~np.isnan(xy[:, list(idx)]).any(axis=(1, 2)) for side, idx in LEGS.items()}


def camera_view(xy: np.ndarray) -> str:
    """"side" or "front" (front or back), from three cues: a side view hides the far hip in most
    frames, or shows the two hips (nearly) on top of each other (a model's usual answer); and from
    the side a bent knee sits well in front of the hip (horizontal hip-knee
    distance >= `SIDE_VIEW_MIN_KNEE_FORWARD` thigh lengths, median over frames where the hip-ankle
    distance is under `BENT` of its standing value), while from the front it stays under the hip.
    88 of the 114 Penn Action squat clips right (tests/test_squat_tracks.py); `--view` overrides."""
    hips = ~np.isnan(xy[:, [LEGS["left"][0], LEGS["right"][0]]]).any(-1)  # (T, 2)
    any_hip = hips.any(1)
    if not any_hip.any() or hips.all(1).sum() < SIDE_VIEW_MAX_BOTH_HIPS * any_hip.sum():
        return "side"
    (lh, lk, _), (rh, rk, _) = LEGS["left"], LEGS["right"]
    hip_width = np.linalg.norm(xy[:, lh] - xy[:, rh], axis=-1)
    thigh = np.fmax(np.linalg.norm(xy[:, lh] - xy[:, lk], axis=-1), np.linalg.norm(xy[:, rh] - xy[:, rk], axis=-1))
    both = ~np.isnan(hip_width) & ~np.isnan(thigh) & (thigh > 0)
    if both.sum() >= MIN_FRAMES and np.median(hip_width[both] / thigh[both]) < SIDE_VIEW_MAX_HIP_WIDTH:
        return "side"  # the hips (nearly) overlap
    forward = []
    for (h, k, _), reach in zip(LEGS.values(), leg_length(xy).T):
        thigh = np.linalg.norm(xy[:, h] - xy[:, k], axis=-1)
        seen = ~np.isnan(reach) & ~np.isnan(thigh)
        if seen.sum() < MIN_FRAMES:
            continue
        bent = seen & (reach < BENT * np.percentile(reach[seen], STANDING_PERCENTILE))
        if bent.any():
            forward.append(np.median(np.abs(xy[bent, k, 0] - xy[bent, h, 0]))
                           / np.percentile(thigh[seen], STANDING_PERCENTILE))
    return "side" if forward and max(forward) >= SIDE_VIEW_MIN_KNEE_FORWARD else "front"


def near_leg(xy: np.ndarray, confidence: np.ndarray) -> str:
    """The side whose hip, knee and ankle are all known in the most frames (ties: the higher
    mean confidence): the leg nearer the camera in a side view."""
    seen = leg_seen(xy)
    conf = np.nan_to_num(confidence, nan=0.0)
    score = {side: (int(seen[side].sum()), float(conf[:, list(idx)].mean()) if len(conf) else 0.0)
             for side, idx in LEGS.items()}
    return max(score, key=score.get)
