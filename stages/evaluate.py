"""DVC stage `evaluate@<row>`: metrics JSON and figures of one trained row on its val subset."""

import argparse
from dataclasses import asdict

from squatpose import tracking
from squatpose.errors import guarded
from squatpose.config import load_params
from squatpose.atomic import write_json
from squatpose.evaluate import evaluate_row, summary
from squatpose.models import load_checkpoint
from squatpose.device import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--row", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--shards", required=True, help="the val shard set")
    parser.add_argument("--subsets", required=True)
    parser.add_argument("--metrics", required=True, help="JSON file for the summary (a DVC metric)")
    parser.add_argument("--details", required=True, help="JSON file for the full metrics")
    parser.add_argument("--figures", required=True, help="folder for the PNG figures")
    args = parser.parse_args()
    params = load_params()
    device = pick_device(params.train.device)
    model, meta = load_checkpoint(args.checkpoint, device)
    metrics = evaluate_row(args.row, params, model, meta, args.shards, args.subsets, args.figures, device)
    write_json(args.details, metrics)
    write_json(args.metrics, summary(metrics))
    if meta.get("mlflow_run_id"):
        tracking.log_evaluation(params.mlflow, meta["mlflow_run_id"], summary(metrics), asdict(params.evaluate),
                                [args.details, args.figures],
                                args.checkpoint if params.mlflow.log_checkpoint else None)
    print(f"{args.row}: PCK@0.05 {metrics['pck@0.05']:.3f}, PCK@0.1 {metrics['pck@0.1']:.3f}, "
          f"AP {metrics['ap']:.3f}, val loss {metrics['val_loss']:.3g}")


if __name__ == "__main__":
    guarded(main)
