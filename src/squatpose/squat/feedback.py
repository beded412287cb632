"""Plain-language feedback per repetition, from the numbers `analyze` attaches to each rep."""

from dataclasses import dataclass

from squatpose.squat.reps import Rep


@dataclass(frozen=True)
class FeedbackRules:
    parallel_deg: float = 0.0  # thigh angle to the horizontal at or below which depth is reached
    valgus: float = 0.10  # knee this fraction of the leg length inside the hip-ankle line: caves in
    asymmetry_deg: float = 10.0  # left and right knee angles differ by more at the bottom
    fast_descent_s: float = 0.5  # a quicker way down is flagged


def _thigh_words(thigh: float) -> str:
    """'thigh 12° above horizontal', 'thigh 0.3° below horizontal' (a decimal under 1°)."""
    return f"thigh {abs(thigh):.{0 if abs(thigh) >= 1 else 1}f}° {'above' if thigh > 0 else 'below'} horizontal"


def frame_feedback(row, view: str, legs: tuple[str, ...], rules: FeedbackRules = FeedbackRules()) -> list[str]:
    """Sentences for one still image (`row`: its measures, kinematics.measures columns)."""
    out = []
    thighs = [row[f"thigh_angle_{s}"] for s in legs if row[f"thigh_angle_{s}"] == row[f"thigh_angle_{s}"]]
    if not thighs:
        out.append("depth unknown (hip or knee not confident)")
    else:
        out.append(f"{'parallel reached' if max(thighs) <= rules.parallel_deg else 'above parallel'} "
                   f"({_thigh_words(max(thighs))})")
    for side in legs:
        v = row[f"valgus_{side}"]
        if view == "front" and v == v and v > rules.valgus:
            out.append(f"{side} knee caves in ({100 * v:.0f}% of leg length inside the hip-ankle line)")
    return out


def rep_feedback(rep: Rep, rules: FeedbackRules = FeedbackRules()) -> list[str]:
    """Sentences for one rep; each says what was seen and the number behind it."""
    e, n, out = rep.extra, rep.number, []
    thigh = e.get("thigh_angle_at_bottom")
    if thigh is None:
        out.append(f"rep {n}: depth unknown (hip or knee not confident at the bottom)")
    elif thigh <= rules.parallel_deg:
        out.append(f"rep {n}: parallel reached ({_thigh_words(thigh)})")
    else:
        out.append(f"rep {n}: above parallel ({_thigh_words(thigh)} at the bottom)")
    for side in ("left", "right"):
        v = e.get(f"{side}_valgus_at_bottom")
        if v is not None and v > rules.valgus:
            out.append(f"rep {n}: {side} knee caves in at the bottom "
                       f"({100 * v:.0f}% of leg length inside the hip-ankle line)")
    left, right = e.get("left_knee_angle_at_bottom"), e.get("right_knee_angle_at_bottom")
    if e.get("view") == "front" and left is not None and right is not None \
            and abs(left - right) > rules.asymmetry_deg:
        more = "left" if left < right else "right"
        out.append(f"rep {n}: {more} knee bends {abs(left - right):.0f}° more than the other at the bottom")
    if rep.descent_s < rules.fast_descent_s:
        out.append(f"rep {n}: fast descent ({rep.descent_s:.1f} s): control the way down")
    return out
