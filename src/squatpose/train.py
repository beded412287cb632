"""The training loop: one process, or DistributedDataParallel under `torchrun`; a checkpoint
every epoch, written atomically; a killed run resumes from its last checkpoint.

A run is reproducible: the model is initialised from `train.seed` and each epoch's shuffle is
seeded by (seed, epoch), so on a CPU a resumed run ends with the same weights as one that was
never interrupted.
"""

import csv
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from squatpose import tracking
from squatpose.atomic import atomic_path
from squatpose.codec import HeatmapCodec
from squatpose.config import Params
from squatpose.errors import SquatposeError
from squatpose.evaluate import accuracy, predict
from squatpose.loss import JointsMSELoss
from squatpose.models import build, count_macs, count_params, save_checkpoint
from squatpose.shards import ShardDataset
from squatpose.subsets import subset_path

log = logging.getLogger(__name__)

HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "val_pck@0.05", "samples_per_s")


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto`: the CUDA device of this rank when there is one, else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SquatposeError("params.yaml: train.device is cuda, but no CUDA device is available")
    return torch.device("cuda", local_rank)


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def run_fingerprint(row_name: str, params: Params, train_ids: np.ndarray) -> str:
    """What a checkpoint must match to be resumed: the row, its settings and its training data."""
    row = params.row(row_name)
    key = [row_name, asdict(row), asdict(params.models[row.model]), asdict(params.train),
           asdict(params.crop), asdict(params.heatmap)]
    h = hashlib.sha1(json.dumps(key, sort_keys=True).encode())
    h.update(np.asarray(train_ids, np.int64).tobytes())
    return h.hexdigest()


def write_history(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def _mlflow_start(params: Params, row_name: str, run_id: str | None, train_persons: int):
    """Start (or continue) this row's MLflow run, with its params and tags."""
    import mlflow

    exp = tracking.experiment_id(params.mlflow)
    if run_id:
        return mlflow.start_run(run_id=run_id)
    row = params.row(row_name)
    run = mlflow.start_run(experiment_id=exp, run_name=row_name, tags={
        "model": row.model, "subset": row.subset, "row": row_name, "data_source": params.data.source,
        "git_commit": tracking.git_commit()})
    flat = {"model": row.model, "subset": row.subset, "train_persons": train_persons,
            **{f"model.{k}": v for k, v in asdict(params.models[row.model]).items()},
            **{f"train.{k}": v for k, v in asdict(params.train).items()},
            **{f"heatmap.{k}": v for k, v in asdict(params.heatmap).items()},
            **{f"crop.{k}": v for k, v in asdict(params.crop).items()}}
    mlflow.log_params(flat)
    return run


def train_row(row_name: str, params: Params, shards_root: str | Path, subsets_dir: str | Path,
              out_dir: str | Path, history_path: str | Path | None = None, resume: bool = True,
              progress: bool = True, track: bool = True) -> Path:
    """Train one row of the results table; returns the path of its final checkpoint (model.pt).

    `out_dir` holds `last.pt` (everything needed to resume, written each epoch) and `model.pt`.
    """
    row = params.row(row_name)
    mcfg, tcfg = params.models[row.model], params.train
    shards_root, out_dir = Path(shards_root), Path(out_dir)
    device = pick_device(tcfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    rank, world = init_distributed(device)
    main = rank == 0
    amp = tcfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16

    train_ds = ShardDataset.from_subset(shards_root / "train", subset_path(subsets_dir, "train", row.subset))
    val_ds = ShardDataset.from_subset(shards_root / "val", subset_path(subsets_dir, "val", row.subset))
    if len(train_ds) == 0:
        raise SquatposeError(f"row {row_name}: no training persons in {row.subset}")
    val_table = __import__("pandas").read_parquet(subset_path(subsets_dir, "val", row.subset))
    codec = HeatmapCodec.from_config(params.crop, params.heatmap)

    torch.manual_seed(tcfg.seed)
    model = build(row.model, mcfg.pretrained).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=mcfg.lr, weight_decay=tcfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    fingerprint = run_fingerprint(row_name, params, train_ds.ann_ids)
    start_epoch, history, run_id, elapsed = 0, [], None, 0.0
    last = out_dir / "last.pt"
    if resume and last.is_file():
        state = torch.load(last, map_location=device, weights_only=False)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, history = state["epoch"] + 1, state["history"]
            run_id, elapsed = state.get("mlflow_run_id"), state["train_time_s"]
            if main:
                log.info("%s: resuming after epoch %d of %d", last, start_epoch, mcfg.epochs)
        elif main:
            log.info("%s: settings or data changed since this checkpoint; starting afresh", last)

    net = DistributedDataParallel(model) if world > 1 else model
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=tcfg.seed)
    loader = DataLoader(train_ds, batch_size=mcfg.batch_size, sampler=sampler, num_workers=tcfg.workers,
                        pin_memory=device.type == "cuda", persistent_workers=tcfg.workers > 0)
    criterion = JointsMSELoss(use_target_weight=True)
    run = _mlflow_start(params, row_name, run_id, len(train_ds)) if main and track else None
    run_id = run.info.run_id if run else run_id

    try:
        for epoch in range(start_epoch, mcfg.epochs):
            sampler.set_epoch(epoch)
            net.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros(2, device=device)  # (sum of loss * batch, samples)
            bar = tqdm(loader, desc=f"{row_name} epoch {epoch + 1}/{mcfg.epochs}", unit="batch",
                       disable=not (progress and main), leave=False)
            for batch in bar:
                image = batch["image"].to(device, non_blocking=True)
                target = batch["target"].to(device, non_blocking=True)
                weight = batch["target_weight"].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                    loss = criterion(net(image), target, weight)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_sum += torch.stack([loss.detach().float() * len(image),
                                         torch.tensor(float(len(image)), device=device)])
                rate = float(loss_sum[1]) * world / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{loss.item():.2e}", samples_per_s=f"{rate:.1f}")
            if world > 1:
                dist.all_reduce(loss_sum)
            seconds = time.perf_counter() - t0
            elapsed += seconds
            if main:
                pred = predict(model, val_ds, codec, params.evaluate.batch_size, device=device)
                val_pck = accuracy(pred, val_ds, val_table)["pck@0.05"] if len(val_ds) else float("nan")
                entry = {"epoch": epoch + 1, "train_loss": float(loss_sum[0] / loss_sum[1]),
                         "val_loss": pred.loss, "val_pck@0.05": val_pck,
                         "samples_per_s": float(loss_sum[1]) / seconds}
                history.append(entry)
                log.info("%s epoch %d/%d: %s", row_name, epoch + 1, mcfg.epochs,
                         ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch"))
                if history_path:
                    write_history(Path(history_path), history)
                if run:
                    import mlflow

                    mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in entry.items() if k != "epoch"},
                                       step=epoch + 1)
                with atomic_path(last) as tmp:
                    torch.save({"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                                "history": history, "mlflow_run_id": run_id, "train_time_s": elapsed}, tmp)
            if world > 1:
                dist.barrier()

        checksums = _replica_checksums(model, world)
        final = out_dir / "model.pt"
        if main:
            if history_path and not history:
                write_history(Path(history_path), history)
            meta = {"model": row.model, "row": row_name, "subset": row.subset, "epochs": mcfg.epochs,
                    "train_persons": len(train_ds), "params": count_params(model), "macs": count_macs(model),
                    "train_time_s": elapsed, "history": history, "mlflow_run_id": run_id,
                    "crop": asdict(params.crop), "heatmap": asdict(params.heatmap),
                    "data_source": params.data.source, "world_size": world, "replica_checksums": checksums}
            save_checkpoint(final, model, meta)
            if run:
                import mlflow

                mlflow.log_metrics({"train_time_s": elapsed})
        return final
    finally:
        if run:
            import mlflow

            mlflow.end_run()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _replica_checksums(model: torch.nn.Module, world: int) -> list[float]:
    """Sum of all parameters on each rank: DDP keeps replicas equal, so these must match."""
    local = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    if world == 1:
        return [float(local)]
    gathered = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(gathered, local.to(next(model.parameters()).device))
    values = [float(g) for g in gathered]
    if len(set(values)) != 1:
        raise SquatposeError(f"DDP replicas diverged: parameter sums per rank {values}")
    return values
