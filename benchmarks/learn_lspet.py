"""Learning benchmark: every architecture trained from scratch on real held-out data (LSP Extended).

    python benchmarks/learn_lspet.py                 # the README table (about 90 min on 2 CPU cores)
    python benchmarks/learn_lspet.py --crop 192x256 --epochs 140   # the real thing, on a GPU
    python benchmarks/learn_lspet.py --limit 200 --epochs 1 --out /tmp/lspet-smoke   # a quick check

LSPET images 1-7000 train, 7001-8000 validate (`squatpose import-lsp`, then the pipeline's own
subsets, shards, training and evaluation code). Each architecture trains with augmentation, and
the best of them (val PCK@0.05) again without, to show what augmentation is worth. Crops are
smaller than the report's 256x192 (`--crop`) so that the whole table fits the CPU budget; the
learning-rate schedule is a cosine with a short warm-up. Each run's checkpoint (the best epoch on
val PCK@0.05) is kept under `--out` (not in git), e.g. `<out>/checkpoints/resnet18-aug/model.pt`,
`<out>/best.pt` links to the best of them, and every run is tracked in MLflow (experiment
`lspet-benchmark`). Interrupted, it resumes.
Prints a table and writes `<out>/results.md` and `<out>/results.json`. The converted files and
subset tables under `--out` are reused as they are: give another `--out` for another `--limit`.
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from squatpose import joints
from squatpose.atomic import atomic_path, write_json
from squatpose.config import Params, params_from_dict
from squatpose.download import provide_coco_dir
from squatpose.evaluate import evaluate_row
from squatpose.lsp import import_lsp
from squatpose.models import ARCHITECTURES, build, load_checkpoint
from squatpose.shards import write_shards
from squatpose.subsets import subset_path, write_subsets
from squatpose.train import train_row

REPO = Path(__file__).resolve().parents[1]
LSPET = REPO.parent / "shared" / "data" / "lspet"


def benchmark_params(args: argparse.Namespace, coco_dir: Path, rows: dict) -> Params:
    """The repository's params.yaml with the benchmark's data, crop size, schedule and rows."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    width, height = (int(v) for v in args.crop.split("x"))
    images = str(Path(args.lspet, "images").resolve())
    raw["data"].update(source="coco_dir", train_images=images, val_images=images,
                       train_annotations=str(coco_dir / "annotations" / "person_keypoints_train.json"),
                       val_annotations=str(coco_dir / "annotations" / "person_keypoints_val.json"))
    raw["crop"].update(width=width, height=height)
    raw["heatmap"].update(width=width // 4, height=height // 4)
    for name in raw["models"]:
        raw["models"][name].update(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                   lr_schedule="cosine", warmup_iters=args.warmup, pretrained=False)
    raw["rows"] = rows
    raw["model"] = next(iter(rows.values()))["model"]
    raw["mlflow"]["experiment"] = "lspet-benchmark"
    raw["evaluate"]["figure_persons"] = 16
    return params_from_dict(raw, "benchmark params")


def prepare(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    """LSPET -> COCO files -> subset tables -> shards (each step skipped when already done)."""
    coco_dir, raw_dir, subsets_dir, shards_dir = out / "coco", out / "raw", out / "subsets", out / "shards"
    last = 7000 if args.limit is None else min(args.limit, 7000)
    splits = {"train": range(1, last + 1), "val": range(7001, 7001 + (1000 if args.limit is None else
                                                                    max(args.limit // 4, 50)))}
    if not (coco_dir / "annotations" / "person_keypoints_val.json").is_file():
        print(json.dumps(import_lsp(Path(args.lspet, "joints.mat"), Path(args.lspet, "images"), coco_dir, splits)))
    params = benchmark_params(args, coco_dir, {"probe": {"model": "resnet18", "subset": "full"}})
    if not (subsets_dir / "val-full.parquet").is_file():
        provide_coco_dir(params.data, raw_dir)
        print(json.dumps(write_subsets(raw_dir, subsets_dir, out / "subsets.json", params.subsets)))
    for split in ("train", "val"):
        table = pd.read_parquet(subset_path(subsets_dir, split, "full"))
        write_shards(table, shards_dir / split, params.crop, params.heatmap, params.shards.shard_size,
                     params.shards.workers)
    return subsets_dir, shards_dir


def init_pck(params: Params, row: str, shards_dir: Path, subsets_dir: Path) -> float:
    """Val PCK@0.05 of the row's architecture as initialised for training (same seed), before any step."""
    torch.manual_seed(params.train.seed)
    model = build(params.row(row).model, pretrained=False)
    return evaluate_row(row, params, model, {}, shards_dir / "val", subsets_dir)["pck@0.05"]


def run_one(args, out: Path, row: str, model: str, augment: bool, subsets_dir: Path, shards_dir: Path) -> dict:
    """Train (or resume, or reuse) one row, evaluate it on val, and return its table entry."""
    params = benchmark_params(args, out / "coco", {row: {"model": model, "subset": "full", "augment": augment}})
    t0 = time.perf_counter()
    ckpt = train_row(row, params, shards_dir, subsets_dir, out / "checkpoints" / row,
                     out / "history" / f"{row}.csv", progress=not args.quiet)
    wall = time.perf_counter() - t0
    net, meta = load_checkpoint(ckpt)
    metrics = evaluate_row(row, params, net, meta, shards_dir / "val", subsets_dir, out / "figures" / row)
    history = meta["history"]
    return {"row": row, "model": model, "augment": augment, "checkpoint": str(ckpt),
            "pck@0.05_init": init_pck(params, row, shards_dir, subsets_dir),
            "epochs_run": meta["epochs_run"], "kept_epoch": meta["kept_epoch"],
            "train_time_s": meta["train_time_s"], "wall_this_call_s": wall,
            "samples_per_s": sum(h["samples"] for h in history) / max(meta["train_time_s"], 1e-9),
            "params": meta["params"], "macs": meta["macs"], **{k: metrics[k] for k in (
                "pck@0.05", "pck@0.1", "pck@0.05_joints", "pck@0.1_joints", "ap", "knee_angle", "val_persons")}}


def table(results: list[dict], args: argparse.Namespace) -> str:
    """Markdown: the summary table and the per-joint table."""
    lines = [f"LSPET 1-7000 train / 7001-8000 val, {args.crop} crops, {args.epochs} epochs, batch "
             f"{args.batch_size}, Adam lr {args.lr} cosine, warm-up {args.warmup} batches, from scratch, "
             f"model.pt = best val PCK@0.05 epoch; {torch.get_num_threads()} CPU threads",
             "", "| run | params | PCK@0.05 at init | PCK@0.05 | PCK@0.1 | AP | knee angle error L / R (deg) "
             "| kept epoch | train time | samples/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        knee = r["knee_angle"]
        lines.append(f"| {r['row']} | {r['params'] / 1e6:.1f} M | {r['pck@0.05_init']:.3f} | {r['pck@0.05']:.3f} "
                     f"| {r['pck@0.1']:.3f} | {r['ap']:.3f} | {knee['left_mae_deg']:.1f} / {knee['right_mae_deg']:.1f} "
                     f"| {r['kept_epoch']} of {r['epochs_run']} | {r['train_time_s'] / 60:.1f} min "
                     f"| {r['samples_per_s']:.1f} |")
    lines += ["", "PCK@0.05 / PCK@0.1 per joint:", "",
              "| run | " + " | ".join(joints.NAMES) + " |", "|---|" + "---|" * len(joints.NAMES)]
    for r in results:
        lines.append(f"| {r['row']} | " + " | ".join(
            f"{r['pck@0.05_joints'][n]:.3f} / {r['pck@0.1_joints'][n]:.3f}" for n in joints.NAMES) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lspet", default=str(LSPET), help="folder with joints.mat and images/")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "lspet"))
    parser.add_argument("--crop", default="96x128", help="crop WIDTHxHEIGHT (the report: 192x256)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100, help="warm-up batches")
    parser.add_argument("--models", default=",".join(ARCHITECTURES), help="comma-separated architectures")
    parser.add_argument("--augment", choices=("both", "on", "off"), default="both",
                        help="both: each model with augmentation, then the best again without (the README "
                             "table); on / off: each model only with / without")
    parser.add_argument("--limit", type=int, help="use only the first N training images (a smoke test)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s", stream=sys.stderr)
    out = Path(args.out)
    if not Path(args.lspet, "joints.mat").is_file():
        sys.exit(f"error: {args.lspet}: no joints.mat (LSP Extended); pass --lspet")
    subsets_dir, shards_dir = prepare(args, out)
    results = []
    for model in args.models.split(","):
        if args.augment != "off":
            results.append(run_one(args, out, f"{model}-aug", model, True, subsets_dir, shards_dir))
        else:
            results.append(run_one(args, out, f"{model}-noaug", model, False, subsets_dir, shards_dir))
        write_json(out / "results.json", {"settings": vars(args), "runs": results})
    if args.augment == "both":
        best = max(results, key=lambda r: r["pck@0.05"])
        results.append(run_one(args, out, f"{best['model']}-noaug", best["model"], False, subsets_dir, shards_dir))
    write_json(out / "results.json", {"settings": vars(args), "runs": results})
    text = table(results, args)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(text)
    print(text)
    link_best(out, results)


def link_best(out: Path, results: list[dict]) -> None:
    """`<out>/best.pt`: a link to the checkpoint of the run with the best val PCK@0.05."""
    best = max(results, key=lambda r: r["pck@0.05"])
    link = out / "best.pt"
    link.unlink(missing_ok=True)
    link.symlink_to(Path(best["checkpoint"]).resolve().relative_to(out.resolve()))
    print(f"best checkpoint: {link} -> {best['checkpoint']} ({best['row']}, val PCK@0.05 {best['pck@0.05']:.3f})")


if __name__ == "__main__":
    main()
