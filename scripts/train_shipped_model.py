"""Train the model that ships inside the package (src/squatpose/weights/), the one command that retrains it.

    python scripts/train_shipped_model.py                 # train (resumes), evaluate, calibrate, print
    python scripts/train_shipped_model.py --install       # ... and copy it into the package
    python scripts/train_shipped_model.py --trained <run>/checkpoints/lower_body/model.pt --install
                                                          # calibrate a trained model again, no training

Data: LSP Extended images 1-7000 plus the embedded COCO sample's training persons train, LSPET
7001-8000 validate (squatpose/experiments.py: import-lsp, subsets and shards through the
pipeline's own code), augmentation on (scale, rotation, flip, half-body). Training is the
pipeline's own `train_row` (checkpoint every epoch, resumes after a kill: run the same command
again); its files live under $SQUATPOSE_RUNS or ~/.cache/squatpose/runs/shipped-<recipe>, outside
the checkout. The resume key covers the training code: run it from a fixed commit (a separate
`git worktree`) while you edit this one. After training, the model is evaluated on LSPET val
(`<run>/metrics.json`) and its joint errors are calibrated against its confidence on LSPET val
(squat/uncertainty.py), stored in the checkpoint's meta for `squatpose analyze`; `<run>/failures.png`
shows the val persons whose confident joints are furthest off (docs/MODEL_CARD.md).
"""

import argparse
import logging
import shutil
import sys
from pathlib import Path

import numpy as np

from squatpose.atomic import write_json
from squatpose.codec import codec_from_meta
from squatpose.dataset import ShardDataset
from squatpose.experiments import LSPET, prepare, run_params, runs_dir, shards_for
from squatpose.evaluate import evaluate_row, validator, predict
from squatpose.models import load_checkpoint, save_checkpoint
from squatpose.squat.uncertainty import calibrate_on
from squatpose.subsets import subset_path
from squatpose.train import train_row
from squatpose.viz import keypoint_grid, write_png
from squatpose.weights import SHIPPED

MAX_BYTES = 10 * 1024 * 1024
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "model-card-failures.png"


def failure_figure(model, meta: dict, shards_dir: Path, subsets_dir: Path, path: Path, n: int = 16,
                   confident: float = 0.3) -> None:
    """The `n` val persons whose confident joints (the ones an analysis uses) lie furthest from the
    truth: predictions red, ground truth green."""
    ds = ShardDataset.from_subset(shards_dir, subset_path(subsets_dir, "val", "full"))
    pred = predict(model, ds, codec_from_meta(meta))
    truth = ds.gather("kp_crop")
    used = (ds.gather("in_crop") > 0) & (pred.confidence >= confident)
    error = np.where(used, np.linalg.norm(pred.kp_crop - truth[..., :2], axis=-1), 0.0).max(axis=1)
    worst = np.argsort(-error, kind="stable")[:n]
    crops = np.stack([np.array(ds.array("images", int(i))) for i in worst])
    write_png(path, keypoint_grid(crops, pred.kp_crop[worst], truth[worst]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lspet", default=str(LSPET), help="folder with joints.mat and images/")
    parser.add_argument("--model", default="dilated", help="architecture")
    parser.add_argument("--crop", default="96x128", help="crop WIDTHxHEIGHT")
    parser.add_argument("--codec", default="heatmap", choices=("heatmap", "simcc"))
    parser.add_argument("--sigma", type=float, default=2.0, help="target width in output cells (codec.sigma)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=300, help="warm-up batches")
    parser.add_argument("--init", help="start from this squatpose checkpoint's weights (fine-tuning), "
                        "e.g. src/squatpose/weights/lower_body.pt")
    parser.add_argument("--rotation", type=float, help="augment.rotation in degrees (default: params.yaml's)")
    parser.add_argument("--rotation-prob", type=float, help="augment.rotation_prob (default: params.yaml's)")
    parser.add_argument("--scale", type=float, help="augment.scale (default: params.yaml's)")
    parser.add_argument("--half-body-prob", type=float,
                        help="augment.half_body_prob, the share of legs-only crops (default: params.yaml's)")
    parser.add_argument("--top-cut-prob", type=float,
                        help="augment.top_cut_prob, the share of crops cut between hips and mid-thigh "
                        "(default: params.yaml's)")
    parser.add_argument("--run", help="run folder (default: <runs>/shipped-<model>-<crop>-<codec>-<epochs>[-finetuned][-<augment>])")
    parser.add_argument("--trained", help="skip training and take this trained checkpoint (e.g. the run's "
                        "checkpoints/lower_body/model.pt, to calibrate it again after a change to "
                        "squat/uncertainty.py): evaluated, calibrated and, with --install, installed")
    parser.add_argument("--install", action="store_true", help=f"copy the trained, calibrated model to {SHIPPED}")
    parser.add_argument("--limit", type=int, help="use only the first N LSPET training images (a smoke test)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s", stream=sys.stderr)
    if not Path(args.lspet, "joints.mat").is_file():
        sys.exit(f"error: {args.lspet}: no joints.mat (LSP Extended); pass --lspet")
    if args.trained and not Path(args.trained).is_file():
        sys.exit(f"error: --trained {args.trained}: no such checkpoint")
    augment = {k: v for k, v in {"rotation": args.rotation, "rotation_prob": args.rotation_prob,
                                 "scale": args.scale,
                                 "half_body_prob": args.half_body_prob,
                                 "top_cut_prob": args.top_cut_prob}.items() if v is not None}
    name = "-".join(["shipped", args.model, args.crop, args.codec, str(args.epochs)]
                    + ["finetuned"] * bool(args.init) + [f"{k}{v:g}" for k, v in augment.items()])
    out = Path(args.run) if args.run else runs_dir() / name
    images = prepare(out, Path(args.lspet), args.limit, with_coco_sample=True)
    width, height = (int(v) for v in args.crop.split("x"))
    row = "lower_body"
    params = run_params(out, images, width, height, {row: {"model": args.model, "subset": "full", "augment": True,
                                                    "init": str(Path(args.init).resolve()) if args.init else ""}},
                        {"kind": args.codec, "sigma": args.sigma},
                        {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                         "lr_schedule": "cosine", "warmup_iters": args.warmup}, experiment="shipped-model",
                        augment=augment)
    shards = shards_for(out, params)
    subsets = out / "subsets"
    if args.trained:
        ckpt = Path(args.trained)
    else:
        ckpt = train_row(row, params, shards, subsets, out / "checkpoints" / row, out / "history" / f"{row}.csv",
                         progress=not args.quiet, validate=validator(params))
    model, meta = load_checkpoint(ckpt)
    metrics = evaluate_row(row, params, model, meta, shards / "val", subsets, out / "figures")
    write_json(out / "metrics.json", metrics)
    calibration = calibrate_on(model, meta, shards / "val", subsets)
    meta = {**meta, "calibration": calibration, "trained_on": "LSP Extended 1-7000 + COCO sample train persons",
            "validated_on": "LSP Extended 7001-8000"}
    calibrated = out / "calibrated.pt"
    save_checkpoint(calibrated, model, meta)
    failure_figure(model, meta, shards / "val", subsets, out / "failures.png")
    print(f"{calibrated}: LSPET val PCK@0.05 {metrics['pck@0.05']:.3f}, PCK@0.1 {metrics['pck@0.1']:.3f}, "
          f"knee-angle MAE L/R {metrics['knee_angle']['left_mae_deg']:.1f} / {metrics['knee_angle']['right_mae_deg']:.1f} deg")
    if args.install:
        if calibrated.stat().st_size > MAX_BYTES:
            sys.exit(f"error: {calibrated} is {calibrated.stat().st_size / 1e6:.1f} MB, over the 10 MB limit")
        SHIPPED.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(calibrated, SHIPPED)
        shutil.copyfile(out / "failures.png", FIGURE)
        print(f"installed as {SHIPPED}")


if __name__ == "__main__":
    main()
