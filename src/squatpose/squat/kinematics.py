"""Per-frame squat measures from smoothed joint tracks, by camera view.

Side view: the near leg only (the far leg is mostly hidden or guessed): knee angle hip-knee-ankle
and the thigh's angle to the horizontal, both measured directly.
Front (or back) view: the knee bends toward the camera, so the 2D hip-knee-ankle angle says
little (it can read 170 deg or 1 deg at the bottom of a deep squat). The knee angle is instead
solved from the hip-ankle distance and the leg's own standing thigh and shank lengths (law of
cosines), and the thigh angle from how far the hip has dropped toward the knee; the knee's
deviation from the hip-ankle line (valgus) is measured directly, as a fraction of the standing
leg length (the hip-ankle line shortens at depth).
"""

import warnings

import numpy as np
import pandas as pd

from squatpose.angles import LEGS, angle_at, knee_valgus, leg_length, thigh_angles

STANDING_PERCENTILE = 90  # segment lengths "when standing": this percentile over the clip
# A thigh or shank this far from its median length over the clip: a misplaced joint. The thigh
# foreshortens when it points at the camera (to 0.27 at the bottom of an oblique Penn Action
# "side" clip), the shank much less. On Penn Action's labels these rules drop 1 % of leg frames.
THIGH_RANGE = (0.2, 1.6)
SHANK_RANGE = (0.5, 1.6)
MIN_KNEE_ANGLE = 30.0  # a knee angle under this is not a squat: a misplaced joint


def plausible(xy: np.ndarray, view: str) -> dict[str, np.ndarray]:
    """(T,) mask per side: the leg's hip, knee and ankle are known and form a leg: thigh and shank
    within `THIGH_RANGE` and `SHANK_RANGE` of their median lengths over the clip (from the front
    the shank only) and, in a side view, a knee angle of at least `MIN_KNEE_ANGLE`. A model that puts the knee on the hip, or the
    ankle beside the hip, gives no angle rather than a wrong one."""
    out = {}
    for side, (h, k, a) in LEGS.items():
        thigh = np.linalg.norm(xy[:, h] - xy[:, k], axis=-1)
        shank = np.linalg.norm(xy[:, k] - xy[:, a], axis=-1)
        known = ~np.isnan(thigh) & ~np.isnan(shank)
        ok = known.copy()
        checks = ((thigh, THIGH_RANGE), (shank, SHANK_RANGE)) if view == "side" else ((shank, SHANK_RANGE),)
        for seg, (lo, hi) in checks:  # from the front the thigh may point straight at the camera
            if known.any():
                ratio = seg / np.median(seg[known])
                ok &= (ratio >= lo) & (ratio <= hi)
        if view == "side":
            with np.errstate(invalid="ignore"):
                ok &= angle_at(xy[:, h], xy[:, k], xy[:, a]) >= MIN_KNEE_ANGLE
        out[side] = ok
    return out


def measures(xy: np.ndarray, view: str, legs: tuple[str, ...]) -> pd.DataFrame:
    """Columns knee_angle_<side>, thigh_angle_<side>, valgus_<side> (front only) for the sides in
    `legs` (others NaN; NaN too where the leg is not `plausible`), and knee_angle: the mean of the
    known sides, the curve reps are found on. `xy` (T, 6, 2) image pixels, NaN where a joint is
    not confident."""
    xy = np.asarray(xy, np.float64)
    cols: dict[str, np.ndarray] = {}
    ok = plausible(xy, view)
    thigh = thigh_angles(xy)
    reach = leg_length(xy)
    standing_leg = {side: _standing(reach[:, i]) for i, side in enumerate(LEGS)}
    valgus = knee_valgus(xy, standing_leg) if view == "front" else None
    for side, (h, k, a) in LEGS.items():
        nan = np.full(len(xy), np.nan)
        if side not in legs:
            cols |= {f"knee_angle_{side}": nan, f"thigh_angle_{side}": nan, f"valgus_{side}": nan}
            continue
        if view == "side":
            cols[f"knee_angle_{side}"] = angle_at(xy[:, h], xy[:, k], xy[:, a])
            cols[f"thigh_angle_{side}"] = thigh[side]
            cols[f"valgus_{side}"] = nan
        else:
            thigh_len = _standing(np.linalg.norm(xy[:, h] - xy[:, k], axis=-1))
            shank_len = _standing(np.linalg.norm(xy[:, k] - xy[:, a], axis=-1))
            d = reach[:, list(LEGS).index(side)]
            with np.errstate(invalid="ignore", divide="ignore"):
                cos = (thigh_len**2 + shank_len**2 - d**2) / (2 * thigh_len * shank_len)
                drop = (xy[:, k, 1] - xy[:, h, 1]) / thigh_len
            cols[f"knee_angle_{side}"] = np.degrees(np.arccos(np.clip(cos, -1, 1)))
            cols[f"thigh_angle_{side}"] = np.degrees(np.arcsin(np.clip(drop, -1, 1)))
            cols[f"valgus_{side}"] = valgus[side]
        for name in ("knee_angle", "thigh_angle", "valgus"):
            cols[f"{name}_{side}"] = np.where(ok[side], cols[f"{name}_{side}"], np.nan)
    frame = pd.DataFrame(cols)
    knees = frame[[f"knee_angle_{s}" for s in LEGS]].to_numpy()
    with warnings.catch_warnings():  # all-NaN rows: NaN, as meant
        warnings.simplefilter("ignore", RuntimeWarning)
        frame["knee_angle"] = np.nanmean(knees, axis=1)
    return frame


def _standing(length: np.ndarray) -> float:
    """A segment's standing length: a high percentile of its per-frame lengths (NaN if unseen)."""
    ok = length[~np.isnan(length)]
    return float(np.percentile(ok, STANDING_PERCENTILE)) if ok.size else float("nan")

