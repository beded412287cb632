"""What `squatpose analyze` writes into --out: frames.csv, knee_angle.png, the overlay
(overlay.mp4 for a video, overlay.png for an image) and, last, summary.json listing them.
Each file appears whole or not at all; a failed overlay is a message in the summary, not a loss."""

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from squatpose.angles import LEGS
from squatpose.atomic import atomic_path, write_json
from squatpose.errors import SquatposeError
from squatpose.joints import NAMES
from squatpose.squat.video import Source, VideoOut, frames
from squatpose.viz import draw_analysis, knee_angle_plot, write_png

if TYPE_CHECKING:
    import pandas as pd

    from squatpose.squat.analyze import Analysis


def write_outputs(source: Source, result: "Analysis", out: Path, progress: bool = True) -> None:
    """All outputs of one analysis."""
    out.mkdir(parents=True, exist_ok=True)
    table, summary, seg = result.table, result.summary, result.segmentation
    overlay = "overlay.png" if source.kind == "image" else "overlay.mp4"
    (out / ("overlay.mp4" if source.kind == "image" else "overlay.png")).unlink(missing_ok=True)  # an older run's
    with atomic_path(out / "frames.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.3f")
    t = table["time_s"].to_numpy()
    curves = {f"{side} knee": (table[f"knee_angle_{side}_raw"].to_numpy(), table[f"knee_angle_{side}"].to_numpy(),
                               table[f"knee_angle_{side}_unc"].to_numpy()) for side in summary["legs_reported"]}
    rs = summary["settings"]["reps"]
    knee_angle_plot(out / "knee_angle.png", t, curves, [(r.start_s, r.bottom_s, r.end_s) for r in seg.reps],
                    {"rep starts": seg.standing_angle - rs["depth_in"], "rep ends": seg.standing_angle - rs["depth_out"]},
                    f"{source.path.name}: {len(seg.reps)} reps ({summary['view']} view)")
    written = ["frames.csv", "knee_angle.png"]
    try:
        write_overlay(source, table, summary, out / overlay, progress)
        written.append(overlay)
    except SquatposeError as e:
        summary["messages"].append(f"no overlay: {e}")
    summary["outputs"] = written + ["summary.json"]
    write_json(out / "summary.json", summary)


def write_overlay(source: Source, table: "pd.DataFrame", summary: dict, path: Path, progress: bool) -> None:
    """The input's frames with the analysis drawn on them (a video, or a PNG for an image)."""
    pictures = (overlay_frame(f, row, summary) for f, row in zip(frames(source), table.itertuples(index=False)))
    if source.kind == "image":
        write_png(path, next(pictures))
        return
    video = VideoOut(path, source.fps, source.width, source.height)
    try:
        for picture in tqdm(pictures, total=len(table), unit="frame", desc="overlay", disable=not progress):
            video.write(picture)
    except BaseException:
        video.abort()
        raise
    video.close()


def overlay_frame(frame: np.ndarray, row, summary: dict) -> np.ndarray:
    """One frame of the overlay: skeleton of the confident joints, knee angles, rep counter."""
    kp = np.array([[getattr(row, f"{n}_x"), getattr(row, f"{n}_y")] for n in NAMES])
    known = ~np.isnan(kp).any(1)
    knees = {LEGS[s][1]: getattr(row, f"knee_angle_{s}") for s in summary["legs_reported"]}
    done = sum(1 for r in summary["reps"] if r["end"] <= row.frame)
    lines = [f"reps: {done}", f"frame {row.frame}" + ("" if known.any() else ": no confident joint")]
    if row.rep:
        lines[0] += f"  (rep {row.rep}: {row.phase})"
    box = np.array([row.box_x, row.box_y, row.box_w, row.box_h])
    return draw_analysis(frame, np.nan_to_num(kp), known, box, lines, knees)
