"""Repetitions from a knee-angle curve: a hysteresis state machine, robust to noise and missed frames.

Standing is the curve's 90th percentile. A rep begins when the angle falls more than `depth_in`
below standing and ends when it climbs back within `depth_out` of it; the gap between the two
thresholds is the hysteresis that keeps noise from counting twice. A rep cut off by the end of the
clip, or already under way when it began (the curve never above the thresholds' midpoint before
its way down), is partial, not counted. Gaps of up to `max_gap_s`
are bridged by linear interpolation for the thresholds only; nothing is reported from them.
"""

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class RepSettings:
    depth_in: float = 35.0  # degrees below standing that start a rep
    depth_out: float = 15.0  # back within this many degrees of standing: the rep is over
    settle: float = 5.0  # start/end: where the angle is within this of the local top
    max_gap_s: float = 0.5  # missing stretches up to this long are bridged
    min_rep_s: float = 0.25  # under the start threshold for less time: noise, not a rep (Penn Action: >= 0.4 s)

    def __post_init__(self):
        if not 0 < self.depth_out < self.depth_in:
            from squatpose.errors import SquatposeError

            raise SquatposeError(f"rep thresholds: need 0 < depth_out < depth_in (got depth_out "
                                 f"{self.depth_out}, depth_in {self.depth_in})")


@dataclass
class Rep:
    number: int
    start: int  # frame indices
    bottom: int
    end: int
    start_s: float
    bottom_s: float
    end_s: float
    min_knee_angle: float  # of the curve the reps were found on
    descent_s: float
    ascent_s: float
    missing_frames: int  # frames inside the rep without a value
    at_bottom: "AtBottom | None" = None  # what analysis measured at its bottom (analyze.py)

    def to_dict(self) -> dict:
        """The rep as the summary JSON writes it: its frames and times, then its bottom measures."""
        d = {k: v for k, v in asdict(self).items() if k != "at_bottom"}
        return d | (self.at_bottom.to_dict() if self.at_bottom else {})


MEASURES = ("knee_angle", "thigh_angle", "valgus")  # per leg, at the bottom of each rep


@dataclass
class Measured:
    """A value and its uncertainty (+-, same unit); None where unknown."""
    value: float | None = None
    unc: float | None = None


@dataclass
class AtBottom:
    """What analysis measured at the bottom of a rep (frame 0 of a still image): per leg (side ->
    Measured) the knee angle (deg), thigh angle to the horizontal (deg, + above) and valgus (knee
    inside the hip-ankle line, fraction of leg length), and each joint's confidence there."""
    view: str  # "side" | "front"
    legs: list[str]  # the legs reported
    knee_angle: dict[str, Measured]
    thigh_angle: dict[str, Measured]
    valgus: dict[str, Measured]
    confidence: dict[str, float | None]  # joint name -> the model's confidence
    depth: str | None = None  # the depth verdict (feedback.depth_sentence), once judged

    @property
    def asymmetry_deg(self) -> float | None:
        left, right = self.knee_angle["left"].value, self.knee_angle["right"].value
        return None if left is None or right is None else abs(left - right)

    def to_dict(self) -> dict:
        """Flat keys for the summary JSON: `<side>_<measure>_at_bottom` and `..._unc_at_bottom`."""
        d: dict = {"view": self.view, "legs": list(self.legs)}
        for side in ("left", "right"):
            for name in MEASURES:
                m = getattr(self, name)[side]
                d[f"{side}_{name}_at_bottom"], d[f"{side}_{name}_unc_at_bottom"] = m.value, m.unc
        return d | {"confidence_at_bottom": self.confidence, "asymmetry_deg": self.asymmetry_deg, "depth": self.depth}


@dataclass
class Segmentation:
    reps: list[Rep]
    standing_angle: float  # NaN when the curve is empty
    partial: list[tuple[int, int]]  # (first, last) frames of a rep cut off by the start or end of the clip


def bridge_gaps(t: np.ndarray, y: np.ndarray, max_gap_s: float) -> np.ndarray:
    """`y` with NaN runs no longer than `max_gap_s` (between two values) linearly interpolated."""
    y = np.asarray(y, np.float64).copy()
    known = np.flatnonzero(~np.isnan(y))
    for a, b in zip(known[:-1], known[1:]):
        if b - a > 1 and t[b] - t[a] <= max_gap_s + 1e-9:
            y[a + 1:b] = np.interp(t[a + 1:b], [t[a], t[b]], [y[a], y[b]])
    return y


def segment_reps(t: np.ndarray, angle: np.ndarray, settings: RepSettings = RepSettings()) -> Segmentation:
    """Reps of the knee-angle curve `angle` (T,) degrees, NaN where unknown, at times `t` (T,) s."""
    t = np.asarray(t, np.float64)
    raw = np.asarray(angle, np.float64)
    y = bridge_gaps(t, raw, settings.max_gap_s)
    if np.isnan(y).all():
        return Segmentation([], float("nan"), [])
    standing = float(np.nanpercentile(y, 90))
    low, high = standing - settings.depth_in, standing - settings.depth_out
    # crossings: (frame it went below `low`, frame it came back above `high` or None)
    episodes, down_at, state = [], None, "up"
    for i, v in enumerate(y):
        if np.isnan(v):
            continue
        if state == "up" and v < low:
            state, down_at = "down", i
        elif state == "down" and v > high:
            episodes.append((down_at, i))
            state = "up"
    if state == "down":
        episodes.append((down_at, None))
    episodes = [(d, u) for d, u in episodes if u is None or t[u] - t[d] >= settings.min_rep_s]
    reps, partial = [], []
    prev_end = 0
    # The first rep counts only if the clip shows its way down: the curve was above the midpoint
    # of the two thresholds before it fell below `low`; otherwise the clip began inside a rep.
    mid = (low + high) / 2
    began_inside = bool(episodes) and not (np.nan_to_num(y[:episodes[0][0] + 1], nan=-np.inf) > mid).any()
    for k, (down, up) in enumerate(episodes):
        next_down = episodes[k + 1][0] if k + 1 < len(episodes) else len(y)
        if up is None or (k == 0 and began_inside):  # cut off by the end, or began before the clip did
            first = 0 if k == 0 and began_inside else _settle_back(y, prev_end, down, settings.settle)
            partial.append((first, len(y) - 1 if up is None else up))
            prev_end = len(y) if up is None else up
            continue
        start = _settle_back(y, prev_end, down, settings.settle)
        bottom = down + int(np.nanargmin(y[down:up + 1]))
        end = _settle_forward(y, bottom, up, next_down, settings.settle)
        inside = raw[start:end + 1]
        reps.append(Rep(len(reps) + 1, start, bottom, end, float(t[start]), float(t[bottom]), float(t[end]),
                        float(y[bottom]), float(t[bottom] - t[start]), float(t[end] - t[bottom]),
                        int(np.isnan(inside).sum())))
        prev_end = end
    return Segmentation(reps, standing, partial)


def _settle_back(y: np.ndarray, lo: int, down: int, settle: float) -> int:
    """The last frame in [lo, down] within `settle` degrees of the highest angle there."""
    seg = y[lo:down + 1]
    top = np.nanmax(seg)
    near = np.flatnonzero(seg >= top - settle)
    return lo + int(near[-1])


def _settle_forward(y: np.ndarray, bottom: int, up: int, hi: int, settle: float) -> int:
    """The first frame from `up` on (before `hi`) within `settle` degrees of the highest angle
    between `bottom` and `hi`."""
    seg = y[bottom:hi]
    top = np.nanmax(seg)
    near = np.flatnonzero(seg[up - bottom:] >= top - settle)
    return up + int(near[0]) if near.size else up
