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
from typing import Callable

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
from squatpose.dataset import ShardDataset, crops_to_tensor
from squatpose.device import pick_device
from squatpose.errors import SquatposeError
from squatpose.fingerprint import code_hash, file_sha256, json_hash
from squatpose.models import ARCHITECTURES, build, count_macs, count_params, load_checkpoint, save_checkpoint
from squatpose.subsets import subset_path

log = logging.getLogger(__name__)

# validate(model, val_ds, codec, device) -> (val loss, val PCK@0.05): evaluate.validator(params)
Validate = Callable[[torch.nn.Module, ShardDataset, Codec, torch.device], tuple[float, float]]

# the history CSV: what a rerun on the same machine reproduces (samples/s, a wall-clock figure, is in MLflow)
HISTORY_FIELDS = ("epoch", "lr", "train_loss", "val_loss", "val_pck@0.05", "samples")


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def code_of_row(model: str) -> str:
    """Hash of the code a row's weights depend on: this module and what it imports, with the
    row's own architecture only (another architecture's file does not retrain it).

    Not the `validate` callable's code (evaluate.py, metrics.py): it picks the kept epoch and may
    end a run early, but editing it should not throw away months of COCO training; after such an
    edit the kept epoch stays the one the previous code's val PCK chose."""
    return code_hash(__name__, skip=[f"squatpose.models.{a}" for a in ARCHITECTURES if a != model])


def run_fingerprint(row_name: str, params: Params, train_ds: ShardDataset, val_ds: ShardDataset) -> str:
    """What decides a row's training trajectory: the row, its architecture's settings (but not
    `early_stop`, which only ends it), the codec, the settings of `train` that change weights (not
    workers or device), the augmentation of an augmented row, the weights a fine-tuned row starts
    from (their SHA-256, not the file's path), the training code, and the exact
    shards (their contents) and persons it trains and validates on. A last.pt is resumed only if equal."""
    row = params.row(row_name)
    t = params.train
    arch = {k: v for k, v in asdict(params.models[row.model]).items() if k != "early_stop"}
    augment = asdict(params.augment) if row.augment else None
    start = {k: v for k, v in asdict(row).items() if k != "init"}  # rows from scratch keep their old keys
    if row.init:
        start["init_sha256"] = file_sha256(row.init)  # the weights, wherever the file lies
    return json_hash([row_name, start, arch, asdict(params.codec), t.seed, t.weight_decay, t.amp, augment,
                      code_of_row(row.model),
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
    image = crops_to_tensor(batch["image"].to(device, non_blocking=True))
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
        writer = csv.DictWriter(f, HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def train_row(row_name: str, params: Params, shards_root: str | Path, subsets_dir: str | Path,
              out_dir: str | Path, history_path: str | Path | None = None, *, validate: Validate,
              resume: bool = True, progress: bool = True, track: bool = True) -> Path:
    """Train one row of the results table; returns the path of its final checkpoint (model.pt).

    `out_dir` holds `last.pt` (everything needed to resume, written each epoch) and `model.pt`.
    `validate(model, val_ds, codec, device)` gives (val loss, val PCK@0.05) after each epoch
    (evaluate.validator): model.pt keeps the best epoch by it, and early stopping watches it.
    """
    # set-up: device and processes, data, codec, model, optimizer
    row = params.row(row_name)
    mcfg, tcfg = params.models[row.model], params.train
    out_dir = Path(out_dir)
    device = pick_device(tcfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    rank, world = init_distributed(device)
    main = rank == 0
    amp_dtype = autocast_dtype(tcfg.amp, device)
    train_ds, val_ds = row_datasets(row_name, row.subset, shards_root, subsets_dir)
    codec = make_codec(params.codec, params.crop)
    torch.manual_seed(tcfg.seed)
    model = build(row.model, codec, mcfg.pretrained)
    if row.init:
        start_from(model, Path(row.init), row_name)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=mcfg.lr, weight_decay=tcfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    trajectory = run_fingerprint(row_name, params, train_ds, val_ds)
    last, final = out_dir / "last.pt", out_dir / "model.pt"

    # resume: a finished model.pt of these settings is kept; a matching last.pt continues
    if resume and _meta_of(final).get("fingerprint") == model_fingerprint(trajectory, params, row_name):
        if main:  # e.g. trained by hand with torchrun before `dvc repro` records it
            log.info("%s: already trained with these settings, code and data; kept", final)
        _leave_distributed(world)
        return final
    state = fresh_state()
    if resume and last.is_file():
        state = resume_state(last, trajectory, model, optimizer, scaler, device, main) or state
        if main and state["epochs_done"]:
            log.info("%s: resuming after epoch %d of %d", last, state["epochs_done"], mcfg.epochs)

    # train: one epoch, validate on rank 0, checkpoint, log; until the last epoch or an early stop
    net = DistributedDataParallel(model) if world > 1 else model
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=tcfg.seed)
    loader = DataLoader(train_ds, batch_size=mcfg.batch_size, sampler=sampler, num_workers=tcfg.workers,
                        pin_memory=device.type == "cuda", persistent_workers=tcfg.workers > 0)
    augment = params.augment if row.augment else None
    try:
        with tracking.training_run(params, row_name, state["mlflow_run_id"], len(train_ds),
                                   enabled=main and track) as run:
            state["mlflow_run_id"] = run.id
            stop = _broadcast(main and _early_stop(mcfg, state), world, device)  # killed right after deciding
            for epoch in range(state["epochs_done"], mcfg.epochs):
                if stop:
                    break
                sampler.set_epoch(epoch)
                generator = seeded_generator(tcfg.seed, epoch, rank) if augment else None
                bar = tqdm(loader, desc=f"{row_name} epoch {epoch + 1}/{mcfg.epochs}", unit="batch",
                           disable=not (progress and main), leave=False)
                loss, samples, seconds, lr = train_one_epoch(net, bar, optimizer, scaler, codec, mcfg, epoch,
                                                             augment, generator, device, amp_dtype, world)
                if not math.isfinite(loss):
                    raise SquatposeError(f"row {row_name}: training loss is not finite in epoch {epoch + 1} (a NaN "
                                         "or infinite number in the data, or a learning rate too high); stopped, "
                                         f"{final.name} and {last.name} are those of before")
                if main:
                    val_loss, val_pck = validate(model, val_ds, codec, device)
                    entry = {"epoch": epoch + 1, "lr": lr, "train_loss": loss, "val_loss": val_loss,
                             "val_pck@0.05": val_pck, "samples": samples, "samples_per_s": samples / seconds}
                    record_epoch(state, entry, model, seconds)
                    log.info("%s epoch %d/%d: %s", row_name, epoch + 1, mcfg.epochs,
                             ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch"))
                    if history_path:
                        write_history(Path(history_path), state["history"])
                    stop = _early_stop(mcfg, state)
                    if stop:
                        log.info("%s: no better val PCK@0.05 for %d epochs (best %.4f at epoch %d): stopping",
                                 row_name, mcfg.early_stop, state["best"]["pck"], state["best"]["epoch"])
                    save_last(last, trajectory, state, model, optimizer, scaler)  # before logging: never twice
                    run.log_epoch(entry)
                stop = _broadcast(stop, world, device)

            # save: model.pt with the kept epoch's weights and everything the results table reports
            checksums = _replica_checksums(model, world)
            if main:
                if history_path and not state["history"]:
                    write_history(Path(history_path), [])
                meta = save_final(final, model, state, params, row_name, len(train_ds), world, checksums,
                                  model_fingerprint(trajectory, params, row_name))
                last.unlink(missing_ok=True)  # only an interrupted run resumes; a finished one is done
                run.log_final(meta, history_path)
        return final
    finally:
        _leave_distributed(world)


def start_from(model: torch.nn.Module, checkpoint: Path, row_name: str) -> None:
    """Load `checkpoint`'s weights into `model` (row `init`: fine-tuning, e.g. from the shipped
    model); the checkpoint must hold the same architecture and head."""
    weights, meta = load_checkpoint(checkpoint)
    try:
        model.load_state_dict(weights.state_dict())
    except RuntimeError as e:
        raise SquatposeError(f"{checkpoint}: cannot start row {row_name} from it: its {meta.get('model')} "
                             f"({meta.get('codec', {}).get('kind', 'heatmap')} head) does not fit "
                             f"({str(e).splitlines()[0][:120]})") from None


def row_datasets(row_name: str, subset: str, shards_root: str | Path,
                 subsets_dir: str | Path) -> tuple[ShardDataset, ShardDataset]:
    """The training and validation persons of a row: its subset's tables, read from the shard sets."""
    shards_root = Path(shards_root)
    train_ds = ShardDataset.from_subset(shards_root / "train", subset_path(subsets_dir, "train", subset))
    val_ds = ShardDataset.from_subset(shards_root / "val", subset_path(subsets_dir, "val", subset))
    if len(train_ds) == 0:
        raise SquatposeError(f"row {row_name}: no training persons in {subset}")
    return train_ds, val_ds


def autocast_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype (bfloat16 where supported, else float16), None without it (CPU)."""
    if not (amp and device.type == "cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train_one_epoch(net: torch.nn.Module, batches: tqdm, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    codec: Codec, mcfg: ModelConfig, epoch: int, augment: AugmentConfig | None,
                    generator: torch.Generator | None, device: torch.device, amp_dtype: torch.dtype | None,
                    world: int) -> tuple[float, int, float, float]:
    """One pass over `batches` (a progress bar over the DataLoader) at the scheduled learning rate.
    Returns (mean loss, samples, seconds, last lr), loss and samples summed over all ranks."""
    net.train()  # whatever the validation before left it in
    t0 = time.perf_counter()
    steps = len(batches)
    loss_sum = torch.zeros(2, device=device)  # (sum of loss * batch, samples)
    lr = mcfg.lr
    for step, batch in enumerate(batches):
        lr = mcfg.lr * lr_factor(mcfg, epoch + step / steps, epoch * steps + step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = train_step(net, optimizer, scaler, batch, codec, augment, generator, device, amp_dtype)
        loss_sum[0] += loss.float() * len(batch["image"])
        loss_sum[1] += len(batch["image"])
        if step % 20 == 0 and not batches.disable:  # .item() waits for the GPU: not every step
            rate = float(loss_sum[1]) * world / (time.perf_counter() - t0)
            batches.set_postfix(loss=f"{loss.item():.2e}", samples_per_s=f"{rate:.1f}")
    if world > 1:
        dist.all_reduce(loss_sum)
    return float(loss_sum[0] / loss_sum[1]), int(loss_sum[1]), time.perf_counter() - t0, lr


def fresh_state() -> dict:
    """What a run carries from epoch to epoch (and last.pt holds): epochs done, per-epoch history,
    the model.pt candidate (best val PCK@0.05), the MLflow run, training seconds."""
    return {"epochs_done": 0, "history": [], "best": {"epoch": 0, "pck": -math.inf, "model": None},
            "mlflow_run_id": None, "train_time_s": 0.0}


def record_epoch(state: dict, entry: dict, model: torch.nn.Module, seconds: float) -> None:
    """Add an epoch's entry; keep its weights as the candidate if its val PCK@0.05 is the best
    (or there are no val persons: the latest)."""
    state["epochs_done"] = entry["epoch"]
    state["history"].append(entry)
    state["train_time_s"] += seconds
    pck = entry["val_pck@0.05"]
    if math.isnan(pck) or pck > state["best"]["pck"]:
        state["best"] = {"epoch": entry["epoch"], "pck": pck, "model": copy.deepcopy(model.state_dict())}


def _early_stop(mcfg: ModelConfig, state: dict) -> bool:
    """`early_stop` epochs have passed without a better val PCK@0.05."""
    done = state["epochs_done"]
    return bool(mcfg.early_stop) and done > 0 and done - state["best"]["epoch"] >= mcfg.early_stop


def _broadcast(flag: bool, world: int, device: torch.device) -> bool:
    """Rank 0's decision, on every rank."""
    if world == 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.broadcast(value, 0)
    return bool(value.item())


def save_last(last: Path, trajectory: str, state: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              scaler: torch.amp.GradScaler) -> None:
    """The resume checkpoint, atomically: the state, weights, optimizer and scaler."""
    with atomic_path(last) as tmp:
        torch.save({**state, "fingerprint": trajectory, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()}, tmp)


def resume_state(last: Path, trajectory: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, device: torch.device, main: bool) -> dict | None:
    """Load `last` into model, optimizer and scaler if it belongs to this trajectory; its state, or
    None (different settings, code or data: a warning, and training starts afresh)."""
    saved = _read_last(last, device)
    if saved is None:
        return None
    if saved.get("fingerprint") != trajectory:
        if main:
            log.warning("%s: settings, code or data changed since this checkpoint (%d epochs done); starting "
                        "afresh", last, saved.get("epochs_done", 0))
        return None
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if saved["scaler"] and scaler.is_enabled():
        scaler.load_state_dict(saved["scaler"])
    return {k: saved[k] for k in fresh_state()}


def save_final(final: Path, model: torch.nn.Module, state: dict, params: Params, row_name: str,
               train_persons: int, world: int, checksums: list[float], fingerprint: str) -> dict:
    """model.pt: the kept epoch's weights (the best one with `train.select_best`, else the last)
    and its metadata, which it returns."""
    row = params.row(row_name)
    mcfg, history, best = params.models[row.model], state["history"], state["best"]
    keep_best = params.train.select_best and best["model"] is not None
    if keep_best:
        model.load_state_dict(best["model"])
    kept = best["epoch"] if keep_best else len(history)
    meta = {"model": row.model, "row": row_name, "subset": row.subset, "epochs": mcfg.epochs,
            "epochs_run": len(history), "kept_epoch": kept, "stopped_early": len(history) < mcfg.epochs,
            "augment": asdict(params.augment) if row.augment else None,
            "init_sha256": file_sha256(row.init) if row.init else None, "train_persons": train_persons, "params": count_params(model),
            "macs": count_macs(model, params.crop.height, params.crop.width),
            "train_time_s": state["train_time_s"], "history": history, "mlflow_run_id": state["mlflow_run_id"],
            "crop": asdict(params.crop), "codec": asdict(params.codec),
            "data_source": params.data.source, "world_size": world, "replica_checksums": checksums,
            "fingerprint": fingerprint}
    save_checkpoint(final, model, meta)
    return meta


def _leave_distributed(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def _read_last(last: Path, device: torch.device) -> dict | None:
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
