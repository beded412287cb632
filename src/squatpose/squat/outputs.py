"""What `squatpose analyze` writes into --out: frames.csv, knee_angle.png, the overlay
(overlay.mp4 for a video, overlay.png for an image) and, last, summary.json listing them.
The folder is replaced whole or not at all; a failed overlay is a message in the summary, not a loss."""

import os
import shutil
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from squatpose.angles import LEGS
from squatpose.atomic import write_json
from squatpose.errors import SquatposeError
from squatpose.joints import NAMES
from squatpose.squat.reps import Segmentation
from squatpose.squat.video import Source, VideoOut, frames
from squatpose.viz import draw_analysis, knee_angle_plot, write_png

OUTPUT_NAMES = ("frames.csv", "knee_angle.png", "overlay.mp4", "overlay.png", "summary.json")


@dataclass
class Analysis:
    """What `squatpose analyze` found: the frame table, the reps, and the summary."""
    table: pd.DataFrame  # one row per frame analysed
    segmentation: Segmentation
    summary: dict


def check_out(out: Path) -> None:
    """Refuse an --out that cannot take an analysis: a file, a folder holding other files (it
    is replaced whole), or a place that cannot be written."""
    if out.exists() and not out.is_dir():
        raise SquatposeError(f"{out}: --out is a file, not a folder")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_NAMES)
        if other:
            raise SquatposeError(f"{out}: --out holds files that are not an analysis's ({', '.join(other[:3])}); "
                                 "it would be replaced whole: give a new or an earlier analysis's folder")
    parent = next(p for p in out.absolute().parents if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise SquatposeError(f"{out}: cannot write there ({parent} is not a writable folder)")


def write_outputs(source: Source, result: Analysis, out: Path, progress: bool = True) -> None:
    """All outputs of one analysis, written into a temporary folder beside `out` and swapped in
    whole: a run that fails or is stopped midway leaves `out` as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.writing-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _write_all(source, result, staging, progress)
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        moved = out.exists()
        if moved:
            out.rename(old)
        try:
            staging.rename(out)
        except BaseException:
            if moved:
                old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_all(source: Source, result: Analysis, out: Path, progress: bool) -> None:
    table, summary, seg = result.table, result.summary, result.segmentation
    overlay = "overlay.png" if source.kind == "image" else "overlay.mp4"
    table.to_csv(out / "frames.csv", index=False, float_format="%.3f")
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


def write_overlay(source: Source, table: pd.DataFrame, summary: dict, path: Path, progress: bool) -> None:
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
