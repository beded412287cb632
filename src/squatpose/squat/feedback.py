"""Plain-language feedback per repetition (or still image), from the numbers `analyze` attaches.

A verdict is given only when the value clears its threshold by more than its uncertainty (the
model's own errors propagated to the angle, squat/uncertainty.py); otherwise the sentence says
that it cannot tell, the value with its +-, and which joint was least sure. Without an uncertainty
(a model with no calibration) no verdict is given at all: a confident wrong verdict ("above
parallel" for a deep squat) is worse than none.
"""

from dataclasses import dataclass

from squatpose.angles import LEGS
from squatpose.joints import NAMES
from squatpose.squat.reps import AtBottom, Rep


@dataclass(frozen=True)
class FeedbackRules:
    parallel_deg: float = 0.0  # thigh angle to the horizontal at or below which depth is reached
    valgus: float = 0.10  # knee this fraction of the leg length inside the hip-ankle line: caves in
    asymmetry_deg: float = 10.0  # left and right knee angles differ by more at the bottom
    fast_descent_s: float = 0.5  # a quicker way down is flagged


def judge(value: float | None, unc: float | None, threshold: float) -> str | None:
    """'above' if value - unc > threshold, 'below' if value + unc <= threshold, 'unsure' if the
    interval straddles it or the uncertainty is unknown; None if the value is unknown."""
    if value is None:
        return None
    if unc is None:
        return "unsure"
    if value - unc > threshold:
        return "above"
    if value + unc <= threshold:
        return "below"
    return "unsure"


def _pm(value: float, unc: float | None, unit: str = "°", digits: int = 0) -> str:
    return f"{value:.{digits}f}{unit}" + (f" ±{unc:.{digits}f}{unit}" if unc is not None else " (± unknown)")


def _thigh_words(thigh: float, unc: float | None) -> str:
    """'thigh 12° ±4° above horizontal' (a decimal under 1°)."""
    digits = 0 if abs(thigh) >= 1 else 1
    return f"thigh {_pm(abs(thigh), unc, digits=digits)} {'above' if thigh > 0 else 'below'} horizontal"


def _why(e: AtBottom, joints: list[str], unc: float | None) -> str:
    """Why a value is not judged: its uncertainty is unknown (a model without calibration, or a
    value filled in between confident frames, which has no ±), or the least confident of `joints`."""
    if unc is None:
        return "its uncertainty is unknown (a model without calibration, or a value filled in between confident frames)"
    known = {j: e.confidence[j] for j in joints if e.confidence.get(j) is not None}
    if not known:
        return "joint positions uncertain"
    least = min(known, key=known.get)
    return f"{least.replace('_', ' ')} position uncertain (confidence {known[least]:.2f})"


def depth_sentence(e: AtBottom, rules: FeedbackRules) -> tuple[str | None, str]:
    """(verdict 'parallel' | 'above' | 'unsure' | None, sentence) on depth at the bottom: every reported
    leg must reach parallel; one leg surely above is enough for 'above'."""
    thigh = {s: e.thigh_angle[s] for s in e.legs if e.thigh_angle[s].value is not None}
    if not thigh:
        return None, "depth unknown (hip or knee not confident at the bottom)"
    verdicts = {s: judge(m.value, m.unc, rules.parallel_deg) for s, m in thigh.items()}
    # the leg that decides: the highest thigh (both must reach depth)
    highest = max(thigh.values(), key=lambda m: m.value)
    words = _thigh_words(highest.value, highest.unc)
    if any(v == "above" for v in verdicts.values()):
        above = thigh[next(s for s in thigh if verdicts[s] == "above")]
        return "above", f"above parallel ({_thigh_words(above.value, above.unc)})"
    if all(v == "below" for v in verdicts.values()):
        return "parallel", f"parallel reached ({words})"
    unsure = next(s for s in thigh if verdicts[s] == "unsure")
    hip, knee = (NAMES[i] for i in LEGS[unsure][:2])
    return "unsure", f"depth not judged: {_why(e, [hip, knee], thigh[unsure].unc)} ({words})"


def _valgus_sentences(e: AtBottom, rules: FeedbackRules, prefix: str) -> list[str]:
    out = []
    for side in e.legs:
        v, u = e.valgus[side].value, e.valgus[side].unc
        verdict = judge(v, u, rules.valgus)
        pct = _pm(100 * v, None if u is None else 100 * u, unit="%") if v is not None else ""
        if verdict == "above":
            out.append(f"{prefix}{side} knee caves in ({pct} of leg length inside the hip-ankle line)")
        elif verdict == "unsure":
            hip, knee, ankle = (NAMES[i] for i in LEGS[side])
            out.append(f"{prefix}{side} knee valgus not judged: {_why(e, [hip, knee, ankle], u)} ({pct} of leg length)")
    return out


def _asymmetry_sentence(e: AtBottom, rules: FeedbackRules, prefix: str) -> list[str]:
    left, right = e.knee_angle["left"], e.knee_angle["right"]
    if e.view != "front" or e.asymmetry_deg is None:
        return []
    unc = None if left.unc is None or right.unc is None else (left.unc**2 + right.unc**2) ** 0.5
    verdict = judge(e.asymmetry_deg, unc, rules.asymmetry_deg)
    if verdict == "above":
        more = "left" if left.value < right.value else "right"
        return [f"{prefix}{more} knee bends {_pm(e.asymmetry_deg, unc)} more than the other at the bottom"]
    if verdict == "unsure":
        knees = [NAMES[LEGS[s][1]] for s in LEGS]
        return [f"{prefix}asymmetry not judged: {_why(e, knees, unc)} (knees differ by {_pm(e.asymmetry_deg, unc)})"]
    return []


def frame_feedback(e: AtBottom, rules: FeedbackRules = FeedbackRules()) -> list[str]:
    """Sentences for one still image (`e`: analyze's measures at frame 0)."""
    return [depth_sentence(e, rules)[1]] + (_valgus_sentences(e, rules, "") if e.view == "front" else []) \
        + _asymmetry_sentence(e, rules, "")


def rep_feedback(rep: Rep, rules: FeedbackRules = FeedbackRules()) -> list[str]:
    """Sentences for one rep; each says what was seen, the number behind it and its uncertainty."""
    e, n = rep.at_bottom, rep.number
    out = [f"rep {n}: {depth_sentence(e, rules)[1]}"]
    if e.view == "front":
        out += _valgus_sentences(e, rules, f"rep {n}: ")
    out += _asymmetry_sentence(e, rules, f"rep {n}: ")
    if rep.descent_s < rules.fast_descent_s:
        out.append(f"rep {n}: fast descent ({rep.descent_s:.1f} s): control the way down")
    return out
