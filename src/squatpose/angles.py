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
