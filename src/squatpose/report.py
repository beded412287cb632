"""The results table: one row per model and subset, from the evaluation metrics of each row."""

import json
from pathlib import Path

import pandas as pd

from squatpose.atomic import atomic_path, write_json
from squatpose.config import Params
from squatpose.errors import SquatposeError
from squatpose.joints import NAMES, SHORT_NAMES


def results_table(params: Params, details_dir: str | Path, reference: str | Path | None = None) -> pd.DataFrame:
    """The table of every row in params.yaml, in their order, from each row's full metrics
    (`details_dir`/<row>.json), and last the shipped model's evaluation (`reference`, not
    retrained: its train persons are those it shipped with)."""
    paths = [(name, Path(details_dir) / f"{name}.json") for name in params.rows]
    if reference:
        paths.append(("shipped (reference, not retrained)", Path(reference)))
    records = []
    for name, path in paths:
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SquatposeError(f"{path}: no metrics for row {name} ({e})") from None
        rec = {"row": name, "model": m["model"], "subset": m["subset"], "train_persons": m["train_persons"],
               "val_persons": m["val_persons"], "epochs": m["epochs"], "val_loss": m["val_loss"],
               "pck@0.05": m["pck@0.05"], "pck@0.1": m["pck@0.1"]}
        rec.update({f"pck@0.05 {SHORT_NAMES[j]}": m["pck@0.05_joints"][j] for j in NAMES})
        rec.update({"AP": m["ap"], "knee angle MAE L (deg)": m["knee_angle"]["left_mae_deg"],
                    "knee angle MAE R (deg)": m["knee_angle"]["right_mae_deg"],
                    "params (M)": m["params"] / 1e6, "GMACs": m["macs"] / 1e9})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub table; floats to 3 decimals (sizes and angles to 1)."""
    def fmt(col: str, v) -> str:
        if isinstance(v, float):
            return f"{v:.1f}" if col in ("params (M)", "GMACs") or "deg" in col else f"{v:.3f}"
        return str(v)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(fmt(c, v) for c, v in zip(table.columns, row)) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def headline_row(params: Params) -> str:
    """The row whose metrics are the headline: the first row of architecture `params.model`."""
    try:
        return next(name for name, row in params.rows.items() if row.model == params.model)
    except StopIteration:
        raise SquatposeError(f"params.yaml: no row has model {params.model!r}") from None


def history_table(params: Params, history_dir: str | Path) -> pd.DataFrame:
    """Every row's per-epoch history (`history_dir`/<row>.csv, written by training) in one table
    with a `row` column: dvc.yaml's plots draw one line per row from it."""
    frames = []
    for name in params.rows:
        path = Path(history_dir) / f"{name}.csv"
        try:
            frames.append(pd.read_csv(path).assign(row=name))
        except (OSError, ValueError) as e:
            raise SquatposeError(f"{path}: no training history for row {name} ({e})") from None
    table = pd.concat(frames, ignore_index=True)
    return table[["row"] + [c for c in table.columns if c != "row"]]


def write_report(params: Params, rows_dir: str | Path, details_dir: str | Path, history_dir: str | Path,
                 out_dir: str | Path, reference: str | Path | None = None) -> pd.DataFrame:
    """results.md and results.csv (from the rows' full metrics in `details_dir`), metrics.json (the
    summary in `rows_dir` of the headline row, the first of `params.model`, under `headline`) and
    history.csv. The headline's row name is in results.md; `dvc exp show` has `model`."""
    out_dir = Path(out_dir)
    table = results_table(params, details_dir, reference)
    with atomic_path(out_dir / "results.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out_dir / "results.md") as tmp:
        tmp.write_text(f"Results on `{params.data.source}` (val split of each row's subset)\n\n"
                       + to_markdown(table))
    with atomic_path(out_dir / "history.csv") as tmp:
        history_table(params, history_dir).to_csv(tmp, index=False)
    headline = headline_row(params)
    path = Path(rows_dir) / f"{headline}.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SquatposeError(f"{path}: no summary metrics for the headline row {headline} ({e})") from None
    # under names of its own: `dvc exp show` prefixes a name that several files share with the file
    # (`model` in params.yaml names the row's architecture, so the row's name is left out: narrower)
    write_json(out_dir / "metrics.json", {"headline": summary})
    return table
