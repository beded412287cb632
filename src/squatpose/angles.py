"""Joint angles from keypoints: the one definition used by evaluation and squat analysis."""

import numpy as np

from squatpose.joints import NAMES

# (hip, knee, ankle) joint indices of each side
LEGS = {
    "left": (NAMES.index("left_hip"), NAMES.index("left_knee"), NAMES.index("left_ankle")),
    "right": (NAMES.index("right_hip"), NAMES.index("right_knee"), NAMES.index("right_ankle")),
}


def angle_at(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Angle a-b-c at b, in degrees (0..180), for (..., 2) points; NaN where a or c coincides with b."""
    u = np.asarray(a, np.float64) - b
    v = np.asarray(c, np.float64) - b
    nu, nv = np.linalg.norm(u, axis=-1), np.linalg.norm(v, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (u * v).sum(-1) / (nu * nv)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def knee_angles(kp: np.ndarray) -> dict[str, np.ndarray]:
    """Hip-knee-ankle angle per side for keypoints (N, 6, >=2): 180 = straight leg."""
    kp = np.asarray(kp)
    return {side: angle_at(kp[:, h, :2], kp[:, k, :2], kp[:, a, :2]) for side, (h, k, a) in LEGS.items()}


def leg_length(kp: np.ndarray) -> np.ndarray:
    """Hip-ankle distance (N, 2) per side (left, right) of keypoints (N, 6, >=2); NaN if unknown."""
    kp = np.asarray(kp, np.float64)
    return np.stack([np.linalg.norm(kp[:, h, :2] - kp[:, a, :2], axis=-1) for h, _, a in LEGS.values()], axis=-1)


def thigh_angles(kp: np.ndarray) -> dict[str, np.ndarray]:
    """Thigh angle to the horizontal per side, degrees, for keypoints (N, 6, >=2) in image pixels
    (y down): +90 hip straight above the knee, 0 thigh parallel to the floor, < 0 hip below the
    knee. Squat depth is reached at <= 0 (hip crease at or below knee height)."""
    kp = np.asarray(kp, np.float64)
    out = {}
    for side, (h, k, _) in LEGS.items():
        dx = np.abs(kp[:, h, 0] - kp[:, k, 0])
        up = kp[:, k, 1] - kp[:, h, 1]  # image y grows downward
        with np.errstate(invalid="ignore"):
            out[side] = np.degrees(np.arctan2(up, dx))
    return out


def knee_valgus(kp: np.ndarray, leg_length: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Knee deviation from the hip-ankle line per side, as a fraction of the leg length (per side
    in `leg_length`, e.g. standing hip-ankle; default: that frame's hip-ankle distance), for
    keypoints (N, 6, >=2) seen from the front or back: > 0 the knee lies on the inner side of the
    line (toward the other hip: valgus, "knee caves in"), < 0 outside it. Front or back view only."""
    kp = np.asarray(kp, np.float64)
    out = {}
    for side, (h, k, a) in LEGS.items():
        other_hip = LEGS["right" if side == "left" else "left"][0]
        line = kp[:, a, :2] - kp[:, h, :2]
        length = np.linalg.norm(line, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            normal = np.stack([-line[:, 1], line[:, 0]], axis=-1) / length[:, None]
            inward = np.sign(((kp[:, other_hip, :2] - kp[:, h, :2]) * normal).sum(-1))
            scale = length if leg_length is None else leg_length[side]
            out[side] = ((kp[:, k, :2] - kp[:, h, :2]) * normal).sum(-1) * inward / scale
    return out
