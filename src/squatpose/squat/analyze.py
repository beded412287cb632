"""`squatpose analyze`: an image or a video in; joints, angles, reps, feedback and pictures out.

frames --boxes--> crops --model--> heatmaps (or SimCC logits) --codec--> joints (image pixels, confidence)
  --threshold--> confident joints --tracks.fix_swaps--> --smoothing--> --kinematics--> angles
  --reps--> repetitions --feedback--> sentences;  written by `outputs.write_outputs` into --out.
"""

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from squatpose.angles import LEGS, leg_length
from squatpose.errors import Interrupted, SquatposeError
from squatpose.pose_model import PoseModel
from squatpose.geometry import apply_affine, crop_person, invert_affine, warp
from squatpose.joints import NAMES
from squatpose.squat import kinematics, tracks
from squatpose.squat.boxes import BoxFollower, PersonDetector, check_box, iou
from squatpose.squat.feedback import depth_sentence, frame_feedback, rep_feedback
from squatpose.squat.outputs import Analysis, check_out, write_outputs
from squatpose.squat.reps import MEASURES, AtBottom, Measured, Segmentation, segment_reps
from squatpose.squat.settings import Settings
from squatpose.squat.smoothing import jitter, static_frames
from squatpose.squat.uncertainty import COVERAGE, Calibration, angle_uncertainty
from squatpose.squat.video import Source, frames, open_source


@dataclass
class Tracked:
    """What the model saw, frame by frame (T = frames analysed)."""
    kp: np.ndarray  # (T, 6, 2) image pixels, as decoded
    confidence: np.ndarray  # (T, 6)
    boxes: np.ndarray  # (T, 4) x, y, w, h
    crop_scale: np.ndarray  # (T,) image pixels per crop pixel
    messages: list[str] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C: the frames cover only part of the input


def track(source: Source, model: PoseModel, box: np.ndarray | None, detector: PersonDetector | None,
          settings: Settings, progress: bool = True, max_frames: int | None = None) -> Tracked:
    """Run the model on every frame (or the first `max_frames`), the box following the person.
    Anything that stops it midway (an undecodable frame, a runtime error, Ctrl-C) ends the
    tracking with the frames done so far and a message saying why."""
    codec, crop = model.codec, model.crop
    follower: BoxFollower | None = None
    kps, confs, boxes, scales, messages = [], [], [], [], []
    unseen, stopped, interrupted = 0, False, False
    reacquire = max(1, int(settings.reacquire_s * (source.fps or 1)))
    total = source.frame_count if max_frames is None else min(max_frames, source.frame_count)
    bar = tqdm(total=total, unit="frame", disable=not progress or source.kind == "image", desc=source.path.name)
    try:
        for i, frame in enumerate(frames(source)):
            if max_frames is not None and i >= max_frames:
                break
            if follower is None:
                first = box if box is not None else detector.detect(frame)
                if first is None:
                    raise SquatposeError(f"{source.path}: no person found in the first frame; "
                                         "give the box with --box x,y,w,h")
                check_box(first, source.width, source.height, f"{source.path} frame {i}")
                follower = BoxFollower(first, source.width, source.height)
            elif detector is not None and unseen >= reacquire:
                found = detector.detect(frame, near=follower.box)
                unseen = 0  # found or not: the next try is a `reacquire` later
                if found is not None and iou(found, follower.box) < 0.5:
                    follower.reset(found)
                    messages.append(f"frame {i}: person found again by the detector")
            current = follower.box
            m = crop_person(current[None], crop)
            kp_crop, conf = codec.decode(model.outputs(warp(frame, m[0], crop.width, crop.height)[None]))
            kp = apply_affine(invert_affine(m), kp_crop)[0]
            seen = conf[0] >= settings.confidence
            follower.update(kp, seen)
            unseen = 0 if seen.any() else unseen + 1
            kps.append(kp)
            confs.append(conf[0])
            boxes.append(current)
            scales.append(1 / m[0, 0, 0])  # image px per crop px
            bar.update()
    except KeyboardInterrupt:
        stopped = interrupted = True
        messages.append(f"interrupted after {len(kps)} frames: the results cover those")
    except SquatposeError:  # no person, or a bad box, on the first frame
        raise
    except Exception as e:  # a runtime or decoder error midway: keep what was done
        if not kps:
            raise SquatposeError(f"{source.path}: analysis failed on the first frame ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
        stopped = True
        messages.append(f"stopped at frame {len(kps)} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                        "the results cover the frames before it")
    finally:
        bar.close()
    if source.kind == "video" and max_frames is None and not stopped and len(kps) < source.frame_count:
        messages.append(f"decoding stopped after {len(kps)} frames; the video's header announces "
                        f"{source.frame_count}")
    shape = (len(kps), len(NAMES))
    return Tracked(np.array(kps, np.float64).reshape(*shape, 2), np.array(confs, np.float64).reshape(shape),
                   np.array(boxes, np.float64).reshape(-1, 4), np.array(scales, np.float64), messages, interrupted)


def analyze_tracks(tracked: Tracked, fps: float, settings: Settings, still_image: bool = False,
                   calibration: Calibration | None = None) -> Analysis:
    """Angles with their uncertainty (from the model's `calibration`; unknown without one), reps
    and feedback from tracked joints (pure: no files, no model). `fps` 0: no time axis (an image)."""
    n = len(tracked.kp)
    t = np.arange(n) / fps if fps else np.zeros(n)
    seen = tracked.confidence >= settings.confidence
    observed = np.where(seen[..., None], tracked.kp, np.nan)
    scale = _leg_length(observed, tracked.boxes)
    order = tracks.fix_swaps(observed, scale)
    observed, seen = tracks.apply_order(observed, order), tracks.apply_order(seen, order)
    confidence, raw_kp = tracks.apply_order(tracked.confidence, order), tracks.apply_order(tracked.kp, order)
    smooth = settings.smoothing(t, observed, scale) if n > 1 else observed
    view = settings.view if settings.view != "auto" else tracks.camera_view(smooth)
    legs = (tracks.near_leg(smooth, np.where(seen, confidence, 0.0)),) if view == "side" else tuple(LEGS)
    angles = kinematics.measures(smooth, view, legs)
    raw_angles = kinematics.measures(observed, view, legs)
    for side in LEGS:
        angles[f"knee_angle_{side}_raw"] = raw_angles[f"knee_angle_{side}"]
    measured = [f"{name}_{side}" for side in legs for name in MEASURES]
    spread = angle_uncertainty(lambda xy: kinematics.measures(xy, view, legs), smooth, confidence,
                               tracked.crop_scale, calibration, measured)
    for side in LEGS:
        for name in MEASURES:
            angles[f"{name}_{side}_unc"] = spread.get(f"{name}_{side}", np.full(n, np.nan))
    seg = segment_reps(t, angles["knee_angle"].to_numpy(), settings.reps) if not still_image else \
        Segmentation([], float("nan"), [])
    feedback: list[str] = []
    for rep in seg.reps:
        rep.at_bottom = measures_at_bottom(rep.bottom, angles, confidence, view, legs)
        rep.at_bottom.depth = depth_sentence(rep.at_bottom, settings.rules)[0]
        feedback += rep_feedback(rep, settings.rules)
    if still_image:
        feedback += frame_feedback(measures_at_bottom(0, angles, confidence, view, legs), settings.rules)
    elif not seg.reps:
        feedback.append("no complete repetition found: the knee angle has to drop "
                        f"{settings.reps.depth_in:.0f}° below standing and come back within "
                        f"{settings.reps.depth_out:.0f}° of it")
    messages = [f"frames {a}-{b}: no confident joint (person out of view, or the model unsure)"
                for a, b in _runs(~seen.any(1), min_len=max(1, int(fps or 1)))]
    if settings.view == "auto":
        how = "assumed (no confident joints to guess from)" if not seen.any() else \
            f"guessed{' from one frame' if n == 1 else ''}"
        messages.append(f"camera view {how}: {view} (--view overrides)")
    still = static_frames(smooth, scale, fps) if fps else np.zeros(n, bool)
    summary = {
        "frames_analysed": n,
        "frames_with_confident_joints": int(seen.any(1).sum()),
        "joint_confident_fraction": {name: float(seen[:, j].mean()) if n else 0.0 for j, name in enumerate(NAMES)},
        "max_confidence": _num(tracked.confidence.max()) if n else None,
        "view": view,
        "legs_reported": list(legs),
        "knee_angle_method": "hip-knee-ankle angle" if view == "side" else
                             "from hip-ankle distance and standing thigh/shank lengths (law of cosines)",
        "uncertainty": (f"+- half-width of the central {COVERAGE:.0%} of the angles over joints moved by the model's "
                        "own errors at their confidence (calibrated on held-out persons)") if calibration else
                       "unknown: the model carries no calibration of its errors, so no verdict is given",
        "leg_length_px": _num(scale),
        "left_right_swaps_fixed": int((order != np.arange(len(NAMES))).any(1).sum()),
        "standing_knee_angle": _num(seg.standing_angle),
        "reps": [r.to_dict() for r in seg.reps],
        "partial_reps": [{"first_frame": a, "last_frame": b} for a, b in seg.partial],
        "feedback": feedback,
        "messages": messages,
        "jitter": {"still_frames": int(still.sum()), "unit": "mean joint motion per frame / leg length",
                   "raw": _num(jitter(observed, still, scale)), "smoothed": _num(jitter(smooth, still, scale))},
    }
    table = _frame_table(t, tracked.boxes, raw_kp, confidence, seen, smooth, angles, seg)
    return Analysis(table, seg, summary)


def measures_at_bottom(bottom: int, angles: pd.DataFrame, confidence: np.ndarray, view: str,
                       legs: tuple[str, ...]) -> AtBottom:
    """Per-side measures and their uncertainty at the `bottom` frame of a rep (or the nearest frame
    within 2 where the measure is known; frame 0 for a still image), and the confidence of each
    joint there. None where unknown: nothing is taken from elsewhere in the rep."""
    found: dict[str, dict[str, Measured]] = {name: {} for name in MEASURES}
    for side in LEGS:
        for name in MEASURES:
            values = angles[f"{name}_{side}"].to_numpy()
            at = _near_bottom(values, bottom)
            unc = None if at is None else angles[f"{name}_{side}_unc"].to_numpy()[at]
            found[name][side] = Measured(None if at is None else float(values[at]),
                                         None if unc is None or not np.isfinite(unc) else float(unc))
    conf = {n: _num(c) for n, c in zip(NAMES, confidence[bottom])} if len(confidence) else {}
    return AtBottom(view, list(legs), **found, confidence=conf)


def _near_bottom(values: np.ndarray, bottom: int, reach: int = 2) -> int | None:
    """`bottom`, or the frame nearest to it within `reach` frames where `values` is known; None if none."""
    for d in range(reach + 1):
        for i in (bottom - d, bottom + d):
            if 0 <= i < len(values) and np.isfinite(values[i]):
                return i
    return None


def _leg_length(xy: np.ndarray, boxes: np.ndarray) -> float:
    """Median hip-ankle distance over the track, or half the box height where no leg was seen
    whole (or the joints collapsed onto one point)."""
    reach = leg_length(xy)
    if np.isfinite(reach).any() and np.nanmedian(reach) > 1:
        return float(np.nanmedian(reach))
    return float(np.median(boxes[:, 3]) / 2) if len(boxes) else 1.0


def _runs(mask: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """(first, last) of each run of True in `mask` at least `min_len` long."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return [(int(a), int(b) - 1) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))
            if b - a >= min_len]


def _num(v) -> float | None:
    """A float for JSON, None for missing."""
    return None if v is None or not np.isfinite(v) else float(v)


def _frame_table(t: np.ndarray, boxes: np.ndarray, raw_kp: np.ndarray, confidence: np.ndarray, seen: np.ndarray,
                 smooth: np.ndarray, angles: pd.DataFrame, seg: Segmentation) -> pd.DataFrame:
    """frames.csv: one row per frame; joints as used (smoothed, NaN when not confident) and raw."""
    cols: dict[str, np.ndarray] = {"frame": np.arange(len(t)), "time_s": t}
    for k, c in enumerate(("x", "y", "w", "h")):
        cols[f"box_{c}"] = boxes[:, k]
    for j, name in enumerate(NAMES):
        cols[f"{name}_x"], cols[f"{name}_y"] = smooth[:, j, 0], smooth[:, j, 1]
        cols[f"{name}_conf"] = confidence[:, j]
        cols[f"{name}_confident"] = seen[:, j]
        cols[f"{name}_raw_x"], cols[f"{name}_raw_y"] = raw_kp[:, j, 0], raw_kp[:, j, 1]
    rep = np.zeros(len(t), int)
    phase = np.array([""] * len(t), dtype=object)
    for r in seg.reps:
        rep[r.start:r.end + 1] = r.number
        phase[r.start:r.bottom] = "descent"
        phase[r.bottom:r.end + 1] = "ascent"
    table = pd.DataFrame(cols)
    for c in angles.columns:
        table[c] = angles[c].to_numpy()
    table["rep"], table["phase"] = rep, phase
    return table


def analyze(input_path: str | Path, model: PoseModel, out_dir: str | Path, box: np.ndarray | None = None,
            detector: PersonDetector | None = None, settings: Settings = Settings(),
            progress: bool = True, source: Source | None = None) -> Analysis:
    """The whole command: read, track, analyse, write. Raises `SquatposeError` when nothing could
    be analysed; otherwise the outputs are written, with what went wrong in the summary."""
    source = source or open_source(input_path)
    out_dir = Path(os.path.abspath(out_dir))  # `--out .` has a name to swap, too
    check_out(out_dir)  # before minutes of work, not after
    if box is not None:
        check_box(box, source.width, source.height, f"--box for {source.path}")
    elif detector is None:
        raise SquatposeError("no person box: give --box x,y,w,h, or allow the detector")
    tracked = track(source, model, box, detector, settings, progress)
    if not len(tracked.kp):
        raise SquatposeError(f"{source.path}: no frame could be analysed")
    calibration = Calibration.from_meta(model.meta.get("calibration"))
    result = analyze_tracks(tracked, source.fps, settings, still_image=source.kind == "image", calibration=calibration)
    s = result.summary
    notes = list(source.notes) + tracked.messages + s.pop("messages")
    if s["frames_with_confident_joints"] == 0:
        notes.append(f"no joint reached the confidence threshold {settings.confidence} in any frame (highest "
                     f"{s['max_confidence']:.3f}): the model is not sure of this input; angles and reps are "
                     "left empty rather than guessed")
    result.summary = {
        "input": str(source.path), "kind": source.kind, "fps": source.fps, "frame_size": [source.width, source.height],
        "frames_in_header": source.frame_count,
        "model": {"path": str(model.path), "backend": model.backend, "architecture": model.meta.get("model"),
                  "row": model.meta.get("row"), "crop": model.meta.get("crop")},
        "settings": {"confidence": settings.confidence, "view": settings.view,
                     "one_euro": asdict(settings.smoothing), "reps": asdict(settings.reps),
                     "feedback": asdict(settings.rules), "box": None if box is None else box.tolist(),
                     "detector": detector is not None},
        **s,
        "messages": notes,
    }
    if not tracked.interrupted:
        write_outputs(source, result, out_dir, progress)
        return result
    partial = out_dir.with_name(out_dir.name + "-partial")
    check_out(partial)
    write_outputs(source, result, partial, progress)
    raise Interrupted(f"after {len(tracked.kp)} of {source.frame_count} frames: the analysis of those is in "
                      f"{partial}/; {out_dir}/ is left as it was")
