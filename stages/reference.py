"""DVC stage `reference`: the model shipped with squatpose (src/squatpose/weights/lower_body.pt),
evaluated, not retrained, on this data's val persons (subset full) at its own crop size: the
results table's reference row of what a trained model scores."""

import argparse
import dataclasses

import pandas as pd

from squatpose import tracking
from squatpose.atomic import write_json
from squatpose.errors import guarded
from squatpose.config import CropConfig, RowConfig, load_params
from squatpose.evaluate import evaluate_row, summary
from squatpose.models import load_checkpoint
from squatpose.shards import write_shards
from squatpose.subsets import subset_path

ROW = "shipped"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the shipped checkpoint")
    parser.add_argument("--subsets", required=True, help="folder of the subset tables")
    parser.add_argument("--shards", required=True, help="folder for the val crops at the model's crop size")
    parser.add_argument("--metrics", required=True, help="JSON file for the summary (a DVC metric)")
    parser.add_argument("--details", required=True, help="JSON file for the full metrics")
    parser.add_argument("--figures", required=True, help="folder for the PNG figures")
    args = parser.parse_args()
    params = load_params()
    model, meta = load_checkpoint(args.model)
    crop = CropConfig(**meta["crop"])
    table = pd.read_parquet(subset_path(args.subsets, "val", "full"))
    write_shards(table, args.shards, crop, params.shards.shard_size, params.shards.workers)
    ref = dataclasses.replace(params, crop=crop, rows={ROW: RowConfig(meta["model"], "full")})
    metrics = evaluate_row(ROW, ref, model, meta, args.shards, args.subsets, args.figures)
    metrics |= {"train_persons": meta.get("train_persons"), "trained_on": meta.get("trained_on"), "reference": True}
    write_json(args.details, metrics)
    write_json(args.metrics, summary(metrics))
    tracking.log_evaluation(params.mlflow, meta.get("mlflow_run_id") or "", summary(metrics),
                            dataclasses.asdict(params.evaluate), [args.details, args.figures],
                            name="shipped model (reference, not retrained)")
    print(f"{ROW} (reference, not retrained): PCK@0.05 {metrics['pck@0.05']:.3f}, PCK@0.1 {metrics['pck@0.1']:.3f}")


if __name__ == "__main__":
    guarded(main)
