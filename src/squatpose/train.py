"""The training loop: one process, or DistributedDataParallel under `torchrun`; a checkpoint
every epoch, written atomically; a killed run resumes from its last checkpoint.

A run is reproducible: the model is initialised from `train.seed` and each epoch's shuffle is
seeded by (seed, epoch), so on a CPU a resumed run ends with the same weights as one that was
never interrupted.
"""

import contextlib
import copy
import csv
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from squatpose import tracking
from squatpose.atomic import atomic_path
from squatpose.augment import augment_batch, seeded_generator
from squatpose.codec import Codec, in_crop_keypoints, make_codec
from squatpose.config import AugmentConfig, ModelConfig, Params
from squatpose.errors import SquatposeError
from squatpose.evaluate import accuracy, predict
from squatpose.fingerprint import json_hash, source_hash
from squatpose.models import build, count_macs, count_params, save_checkpoint
from squatpose.shards import ShardDataset
from squatpose.subsets import subset_path

log = logging.getLogger(__name__)

HISTORY_FIELDS = ("epoch", "lr", "train_loss", "val_loss", "val_pck@0.05", "samples", "samples_per_s")


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
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


# The modules a row's weights depend on, besides its architecture's file (the DVC deps of train@).
CODE_MODULES = ("squatpose.train", "squatpose.loss", "squatpose.models", "squatpose.models.backbone",
                "squatpose.models.heads", "squatpose.shards", "squatpose.codec", "squatpose.imaging",
                "squatpose.augment", "squatpose.joints")


def run_fingerprint(row_name: str, params: Params, train_ds: ShardDataset, val_ds: ShardDataset) -> str:
    """What decides a row's training trajectory: the row, its architecture's settings (but not
    `early_stop`, which only ends it), the codec, the settings of `train` that change weights (not
    workers or device), the augmentation of an augmented row, the training code, and the exact
    shards (their contents) and persons it trains and validates on. A last.pt is resumed only if equal."""
    row = params.row(row_name)
    t = params.train
    arch = {k: v for k, v in asdict(params.models[row.model]).items() if k != "early_stop"}
    augment = asdict(params.augment) if row.augment else None
    return json_hash([row_name, asdict(row), arch, asdict(params.codec), t.seed, t.weight_decay, t.amp, augment,
                      source_hash(*CODE_MODULES, f"squatpose.models.{row.model}"),
                      [s["content"] for s in train_ds.index["shards"]], train_ds.ann_ids.tolist(),
                      [s["content"] for s in val_ds.index["shards"]], val_ds.ann_ids.tolist()])


def model_fingerprint(trajectory: str, params: Params, row_name: str) -> str:
    """What decides model.pt: the trajectory, where it may stop, and which epoch it keeps."""
    return json_hash([trajectory, params.models[params.row(row_name).model].early_stop, params.train.select_best])


def lr_factor(m: ModelConfig, epoch: float, iteration: int) -> float:
    """The learning rate / `m.lr` at fractional `epoch` (0-based), batch `iteration` (from 0).

    step: times `lr_factor` for each of `lr_steps` reached (SimpleBaseline: 90 and 120 of 140);
    cosine: half a cosine from 1 to 0 over all epochs; constant: 1. A linear warm-up from 1/1000
    over the first `warmup_iters` batches multiplies it. A pure function: resuming needs no state.
    """
    if m.lr_schedule == "step":
        factor = m.lr_factor ** sum(epoch >= s for s in m.lr_steps)
    elif m.lr_schedule == "cosine":
        factor = 0.5 * (1 + math.cos(math.pi * min(epoch / m.epochs, 1.0)))
    else:
        factor = 1.0
    if iteration < m.warmup_iters:
        factor *= 1e-3 + (1 - 1e-3) * iteration / m.warmup_iters
    return factor


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, batch: dict,
               codec: Codec, augment: AugmentConfig | None, generator: torch.Generator | None,
               device: torch.device, amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """One optimisation step on one batch of a ShardDataset: augmented (when `augment`; drawn on
    the CPU, applied on the device), targets through the codec, the codec's loss, mixed precision
    in `amp_dtype` if given. Returns the batch's loss (detached)."""
    image = batch["image"].to(device, non_blocking=True)
    if augment is not None:
        image, kp = augment_batch(image, batch["kp_crop"], batch["in_crop"], augment, codec, generator)
    else:
        kp = in_crop_keypoints(batch["kp_crop"], batch["in_crop"]).to(device, non_blocking=True)
    target, weight = codec.encode(kp)
    with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        loss = codec.loss(net(image), target, weight)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def write_history(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)


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
    val_table = pd.read_parquet(subset_path(subsets_dir, "val", row.subset))
    codec = make_codec(params.codec, params.crop)

    torch.manual_seed(tcfg.seed)
    model = build(row.model, codec, mcfg.pretrained).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=mcfg.lr, weight_decay=tcfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    fingerprint = run_fingerprint(row_name, params, train_ds, val_ds)
    final_fingerprint = model_fingerprint(fingerprint, params, row_name)
    start_epoch, history, run_id, elapsed = 0, [], None, 0.0
    best = {"epoch": 0, "pck": -math.inf, "model": None}  # the model.pt candidate (val PCK@0.05)
    last, final = out_dir / "last.pt", out_dir / "model.pt"
    if resume and final.is_file() and _meta_of(final).get("fingerprint") == final_fingerprint:
        if main:  # e.g. trained by hand with torchrun before `dvc repro` records it
            log.info("%s: already trained with these settings, code and data; kept", final)
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
        return final
    state = _resume_state(last, device) if resume and last.is_file() else None
    if state is not None:
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if state["scaler"] and scaler.is_enabled():
                scaler.load_state_dict(state["scaler"])
            start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]
            run_id, elapsed = state.get("mlflow_run_id"), state["train_time_s"]
            if main:
                log.info("%s: resuming after epoch %d of %d", last, start_epoch, mcfg.epochs)
        elif main:
            log.warning("%s: settings, code or data changed since this checkpoint (epoch %d of %d); "
                        "starting afresh", last, state["epoch"] + 1, mcfg.epochs)

    net = DistributedDataParallel(model) if world > 1 else model
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=tcfg.seed)
    loader = DataLoader(train_ds, batch_size=mcfg.batch_size, sampler=sampler, num_workers=tcfg.workers,
                        pin_memory=device.type == "cuda", persistent_workers=tcfg.workers > 0)
    run = tracking.start_training_run(params, row_name, run_id, len(train_ds)) if main and track else None
    run_id = run.info.run_id if run else run_id

    steps_per_epoch = len(loader)
    stop = torch.zeros(1, device=device)  # 1: early stop (decided on rank 0)
    if start_epoch and mcfg.early_stop and start_epoch - best["epoch"] >= mcfg.early_stop:
        stop[0] = 1  # killed right after the decision: it stands
    try:
        for epoch in range(start_epoch, start_epoch if stop.item() else mcfg.epochs):
            sampler.set_epoch(epoch)
            generator = seeded_generator(tcfg.seed, epoch, rank) if row.augment else None
            net.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros(2, device=device)  # (sum of loss * batch, samples)
            seen = 0
            bar = tqdm(loader, desc=f"{row_name} epoch {epoch + 1}/{mcfg.epochs}", unit="batch",
                       disable=not (progress and main), leave=False)
            for step, batch in enumerate(bar):
                lr = mcfg.lr * lr_factor(mcfg, epoch + step / steps_per_epoch, epoch * steps_per_epoch + step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = train_step(net, optimizer, scaler, batch, codec, params.augment if row.augment else None,
                                  generator, device, amp_dtype if amp else None)
                loss_sum[0] += loss.float() * len(batch["image"])
                loss_sum[1] += len(batch["image"])
                seen += len(batch["image"])
                if step % 20 == 0 and not bar.disable:  # .item() waits for the GPU: not every step
                    rate = seen * world / (time.perf_counter() - t0)
                    bar.set_postfix(loss=f"{loss.item():.2e}", samples_per_s=f"{rate:.1f}")
            if world > 1:
                dist.all_reduce(loss_sum)
            if not torch.isfinite(loss_sum[0]).item():
                raise SquatposeError(f"row {row_name}: training loss is not finite in epoch {epoch + 1} (a NaN or "
                                     "infinite number in the data, or a learning rate too high); stopped, "
                                     f"{final.name} and {last.name} are those of before")
            seconds = time.perf_counter() - t0
            elapsed += seconds
            if main:
                pred = predict(model, val_ds, codec, params.evaluate.batch_size, device=device)
                val_pck = accuracy(pred, val_ds, val_table)["pck@0.05"] if len(val_ds) else float("nan")
                entry = {"epoch": epoch + 1, "lr": lr, "train_loss": float(loss_sum[0] / loss_sum[1]),
                         "val_loss": pred.loss, "val_pck@0.05": val_pck,
                         "samples": int(loss_sum[1]), "samples_per_s": float(loss_sum[1]) / seconds}
                history.append(entry)
                log.info("%s epoch %d/%d: %s", row_name, epoch + 1, mcfg.epochs,
                         ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch"))
                if history_path:
                    write_history(Path(history_path), history)
                if math.isnan(val_pck) or val_pck > best["pck"]:  # no val persons: the latest
                    best = {"epoch": epoch + 1, "pck": val_pck, "model": copy.deepcopy(model.state_dict())}
                if mcfg.early_stop and epoch + 1 - best["epoch"] >= mcfg.early_stop:
                    log.info("%s: no better val PCK@0.05 for %d epochs (best %.4f at epoch %d): stopping",
                             row_name, mcfg.early_stop, best["pck"], best["epoch"])
                    stop[0] = 1
                with atomic_path(last) as tmp:  # before logging: a resumed epoch is never logged twice
                    torch.save({"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                                "history": history, "best": best, "mlflow_run_id": run_id,
                                "train_time_s": elapsed}, tmp)
                if run:
                    import mlflow

                    mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in entry.items()
                                        if k not in ("epoch", "samples")}, step=epoch + 1)
            if world > 1:
                dist.broadcast(stop, 0)
            if stop.item():
                break

        checksums = _replica_checksums(model, world)
        if main:
            if history_path and not history:
                write_history(Path(history_path), history)
            if tcfg.select_best and best["model"] is not None:
                model.load_state_dict(best["model"])
            kept = best["epoch"] if tcfg.select_best and best["model"] is not None else len(history)
            meta = {"model": row.model, "row": row_name, "subset": row.subset, "epochs": mcfg.epochs,
                    "epochs_run": len(history), "kept_epoch": kept, "stopped_early": len(history) < mcfg.epochs,
                    "augment": asdict(params.augment) if row.augment else None,
                    "train_persons": len(train_ds), "params": count_params(model),
                    "macs": count_macs(model, params.crop.height, params.crop.width),
                    "train_time_s": elapsed, "history": history, "mlflow_run_id": run_id,
                    "crop": asdict(params.crop), "codec": asdict(params.codec),
                    "data_source": params.data.source, "world_size": world, "replica_checksums": checksums,
                    "fingerprint": final_fingerprint}
            save_checkpoint(final, model, meta)
            last.unlink(missing_ok=True)  # only an interrupted run resumes; a finished one is done
            if run:
                import mlflow

                kept_pck = history[kept - 1]["val_pck@0.05"] if history else math.nan
                mlflow.log_metrics({"train_time_s": elapsed, "kept_epoch": kept, "kept_val_pck_at_0.05": kept_pck})
        return final
    except BaseException as e:
        if run:
            import mlflow

            mlflow.end_run("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    finally:
        if run:
            import mlflow

            if mlflow.active_run():
                mlflow.end_run()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _resume_state(last: Path, device: torch.device) -> dict | None:
    """The resume checkpoint (plain types only: it cannot run code), or None when it is damaged,
    then set aside as `last.pt.damaged` with a warning: training starts afresh."""
    try:
        return torch.load(last, map_location=device, weights_only=True)
    except Exception as e:
        aside = last.with_name(last.name + ".damaged")
        with contextlib.suppress(FileNotFoundError):  # another rank moved it first
            last.replace(aside)
        log.warning("%s: cannot be read (%s); moved to %s, training starts afresh", last,
                    str(e).splitlines()[0][:200], aside.name)
        return None


def _meta_of(checkpoint: Path) -> dict:
    """The metadata of a finished checkpoint, {} if it cannot be read."""
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)["meta"]
    except Exception:
        return {}


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
