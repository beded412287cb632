"""Learning benchmark: what learns best per CPU-hour, trained from scratch on real held-out data.

    python benchmarks/learn_lspet.py                          # the table in docs/benchmarks.md (about 2 h on 2 CPU cores)
    python benchmarks/learn_lspet.py --candidates dilated,dilated-simcc --minutes 30
    python benchmarks/learn_lspet.py --limit 200 --minutes 1 --out /tmp/lspet-smoke   # a quick check

LSPET images 1-7000 train, 7001-8000 validate (`squatpose import-lsp`, then the pipeline's own
subsets, shards, training and evaluation code; squatpose/experiments.py). Every candidate gets
the same compute budget, `--minutes` of this machine's CPU threads (CPU time, so that other work
on the machine does not shorten anyone's budget): a short probe measures the CPU seconds a
training sample costs (augmentation included), and its epoch count is the budget's worth of
samples, so that its cosine learning-rate schedule ends when the budget does. Augmentation is on (scale, rotation, flip,
half-body), as for the shipped model. Each candidate is an architecture, a crop size and a codec
(CANDIDATES below); heatmap candidates are also decoded three ways (argmax, quarter shift, DARK)
from the same weights, which says what sub-pixel decoding is worth without training anything.

Prints a table (params, MACs, epochs, train time, val PCK@0.05 / 0.1, knee-angle error, CPU
inference fps) and writes `<out>/results.md` and `<out>/results.json`. Each run's checkpoint (best
epoch on val PCK@0.05) is kept under `<out>/checkpoints/<candidate>/model.pt`; every run is
tracked in MLflow (experiment `lspet-benchmark`). Interrupted, it resumes: finished candidates are
reused, a candidate's epochs are fixed in `<out>/plan.json` at its first start.
"""

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from squatpose import joints
from squatpose.atomic import atomic_path, write_json
from squatpose.codec import make_codec
from squatpose.config import Params
from squatpose.dataset import ShardDataset
from squatpose.evaluate import evaluate_row, validator
from squatpose.experiments import LSPET, REPO, prepare, run_params, shards_for
from squatpose.models import build, load_checkpoint
from squatpose.subsets import subset_path
from squatpose.train import seeded_generator, train_row, train_step

# name -> (architecture, crop WxH, codec overrides of params.yaml's `codec`)
CANDIDATES = {
    "dilated": ("dilated", "96x128", {}),
    "dilated_wide": ("dilated_wide", "96x128", {}),
    "mobilenet": ("mobilenet", "96x128", {}),
    "dilated-stride2": ("dilated", "96x128", {"stride": 2}),
    "dilated-144x192": ("dilated", "144x192", {}),
    "dilated-simcc": ("dilated", "96x128", {"kind": "simcc", "sigma": 3.0}),
    "dilated_wide-simcc": ("dilated_wide", "96x128", {"kind": "simcc", "sigma": 3.0}),
    "mobilenet-simcc": ("mobilenet", "96x128", {"kind": "simcc", "sigma": 3.0}),
}
DECODINGS = ("argmax", "quarter", "dark")


def candidate_params(args: argparse.Namespace, out: Path, images: Path, name: str, epochs: int) -> Params:
    model, crop, codec = CANDIDATES[name]
    width, height = (int(v) for v in crop.split("x"))
    return run_params(out, images, width, height, {name: {"model": model, "subset": "full", "augment": True}},
                      codec, {"epochs": epochs, "batch_size": args.batch_size, "lr": args.lr,
                              "lr_schedule": "cosine", "warmup_iters": args.warmup})


def probe_cost(params: Params, row: str, shards: Path, subsets: Path, batches: int = 6) -> float:
    """CPU seconds (all threads) per training sample of the row's model on this machine
    (train_step on real augmented batches, after two warm-up steps)."""
    codec = make_codec(params.codec, params.crop)
    torch.manual_seed(params.train.seed)
    model = build(params.row(row).model, codec)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    ds = ShardDataset.from_subset(shards / "train", subset_path(subsets, "train", "full"))
    loader = DataLoader(ds, batch_size=params.models[params.row(row).model].batch_size, shuffle=True, drop_last=True)
    batches_forever = (batch for _ in iter(int, 1) for batch in loader)
    generator = seeded_generator(0, 0)
    n = 0
    for k in range(2 + batches):
        if k == 2:
            t0, n = time.process_time(), 0
        batch = next(batches_forever)
        train_step(model, optimizer, scaler, batch, codec, params.augment, generator, torch.device("cpu"))
        n += len(batch["image"])
    return (time.process_time() - t0) / n


def inference_fps(model: torch.nn.Module, width: int, height: int, n: int = 50) -> float:
    """PyTorch crops/s at batch 1 on this CPU (eval mode, after warm-up)."""
    x = torch.randn(1, 3, height, width)
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        t0 = time.perf_counter()
        for _ in range(n):
            model(x)
    return n / (time.perf_counter() - t0)


def run_one(args, out: Path, images: Path, name: str, plan: dict, subsets: Path) -> dict:
    """Train (or resume, or reuse) one candidate within the budget, evaluate it, return its entry."""
    probe = candidate_params(args, out, images, name, 1)
    shards = shards_for(out, probe)
    n_train = len(ShardDataset.from_subset(shards / "train", subset_path(subsets, "train", "full")))
    if plan.get(name, {}).get("minutes") != args.minutes:
        cost = probe_cost(probe, name, shards, subsets)
        budget = args.minutes * 60 * torch.get_num_threads()  # CPU seconds
        plan[name] = {"minutes": args.minutes, "cpu_s_per_sample": cost,
                      "epochs": max(1, round(budget / (cost * n_train)))}
        write_json(out / "plan.json", plan)
    params = candidate_params(args, out, images, name, plan[name]["epochs"])
    ckpt = train_row(name, params, shards, subsets, out / "checkpoints" / name, out / "history" / f"{name}.csv",
                     progress=not args.quiet, validate=validator(params))
    net, meta = load_checkpoint(ckpt)
    metrics = evaluate_row(name, params, net, meta, shards / "val", subsets, out / "figures" / name)
    entry = {"row": name, "model": params.row(name).model, "crop": f"{params.crop.width}x{params.crop.height}",
             "codec": dataclasses.asdict(params.codec), "checkpoint": str(ckpt), **plan[name],
             "epochs_run": meta["epochs_run"], "kept_epoch": meta["kept_epoch"], "train_time_s": meta["train_time_s"],
             "samples_per_s": sum(h["samples"] for h in meta["history"]) / max(meta["train_time_s"], 1e-9),
             "params": meta["params"], "macs": meta["macs"],
             "fps": inference_fps(net, params.crop.width, params.crop.height),
             **{k: metrics[k] for k in ("pck@0.05", "pck@0.1", "pck@0.05_joints", "pck@0.1_joints", "ap",
                                         "knee_angle", "val_persons")}}
    if params.codec.kind == "heatmap":
        entry["pck@0.05_by_decoding"] = {}
        for decoding in DECODINGS:
            p = dataclasses.replace(params, codec=dataclasses.replace(params.codec, decoding=decoding))
            m = evaluate_row(name, p, net, meta, shards / "val", subsets)
            entry["pck@0.05_by_decoding"][decoding] = {"pck@0.05": m["pck@0.05"], "pck@0.1": m["pck@0.1"]}
    return entry


def knee_mae(r: dict) -> float:
    k = r["knee_angle"]
    return (k["left_mae_deg"] * k["left_n"] + k["right_mae_deg"] * k["right_n"]) / max(k["left_n"] + k["right_n"], 1)


def table(results: list[dict], args: argparse.Namespace) -> str:
    """Markdown: the summary table, decodings, and the per-joint table."""
    lines = [f"LSPET 1-7000 train / 7001-8000 val, {args.minutes:g} min of {torch.get_num_threads()} CPU threads of "
             "training each (epochs from a probe of CPU time per sample; wall time in the table), "
             f"batch {args.batch_size}, Adam lr {args.lr} cosine, warm-up {args.warmup} batches, augmentation on, "
             f"from scratch, model.pt = best val PCK@0.05 epoch; {torch.get_num_threads()} CPU threads",
             "", "| candidate | crop | codec | params | GMACs | epochs | train time | samples/s | PCK@0.05 | PCK@0.1 "
             "| knee-angle MAE (deg) | CPU fps (PyTorch, batch 1) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["codec"]
        codec = f"simcc x{c['split']:g} s{c['sigma']:g}" if c["kind"] == "simcc" else f"heatmap /{c['stride']} {c['decoding']}"
        lines.append(f"| {r['row']} | {r['crop']} | {codec} | {r['params'] / 1e6:.2f} M | {r['macs'] / 1e9:.2f} "
                     f"| {r['kept_epoch']} of {r['epochs_run']} | {r['train_time_s'] / 60:.1f} min | {r['samples_per_s']:.0f} "
                     f"| {r['pck@0.05']:.3f} | {r['pck@0.1']:.3f} | {knee_mae(r):.1f} | {r['fps']:.0f} |")
    heat = [r for r in results if "pck@0.05_by_decoding" in r]
    if heat:
        lines += ["", "The same weights decoded three ways (PCK@0.05 / PCK@0.1):", "",
                  "| candidate | " + " | ".join(DECODINGS) + " |", "|---|" + "---|" * len(DECODINGS)]
        for r in heat:
            d = r["pck@0.05_by_decoding"]
            lines.append(f"| {r['row']} | " + " | ".join(f"{d[k]['pck@0.05']:.3f} / {d[k]['pck@0.1']:.3f}"
                                                          for k in DECODINGS) + " |")
    lines += ["", "PCK@0.05 / PCK@0.1 per joint:", "",
              "| candidate | " + " | ".join(joints.NAMES) + " |", "|---|" + "---|" * len(joints.NAMES)]
    for r in results:
        lines.append(f"| {r['row']} | " + " | ".join(
            f"{r['pck@0.05_joints'][n]:.3f} / {r['pck@0.1_joints'][n]:.3f}" for n in joints.NAMES) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lspet", default=str(LSPET), help="folder with joints.mat and images/")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "lspet"))
    parser.add_argument("--candidates", default="dilated,dilated_wide,mobilenet,dilated-stride2,dilated-144x192,"
                        "dilated-simcc", help=f"comma-separated, from: {', '.join(CANDIDATES)}")
    parser.add_argument("--minutes", type=float, default=12,
                        help="training budget of each candidate: minutes of all CPU threads (CPU time / threads)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100, help="warm-up batches")
    parser.add_argument("--limit", type=int, help="use only the first N training images (a smoke test)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s", stream=sys.stderr)
    out = Path(args.out)
    if not Path(args.lspet, "joints.mat").is_file():
        sys.exit(f"error: {args.lspet}: no joints.mat (LSP Extended); pass --lspet")
    names = args.candidates.split(",")
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        sys.exit(f"error: unknown candidate {unknown[0]!r}; expected one of {', '.join(CANDIDATES)}")
    images = prepare(out, Path(args.lspet), args.limit)
    plan_path = out / "plan.json"
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else {}
    results = []
    for name in names:
        results.append(run_one(args, out, images, name, plan, out / "subsets"))
        write_json(out / "results.json", {"settings": vars(args), "runs": results})
    text = table(results, args)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
