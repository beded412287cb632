"""One check of training on a GPU: is it correct there, how fast is each architecture, and can the
loader keep up? Prints one table (and, with --out, the same rows as JSON).

    PYTHONPATH=src python benchmarks/gpu_check.py [--budget-s 480] [--out gpu.json]
    PYTHONPATH=src python benchmarks/gpu_check.py --dry-run [--out gpu.json]

Sized to end well inside 10 minutes on one H100 or H200. It reads only the sample's shards
(data/shards/sample/train and val: 192 x 256 crops of real COCO persons, built by `dvc repro`; git
ignores them, so carry `data/shards/sample` to the GPU machine) and needs torch, torchvision,
numpy, pandas, pyarrow, OpenCV, PyYAML and tqdm, not pycocotools, mlflow or dvc. squatpose.shards
and squatpose.train import squatpose.coco, which imports pycocotools at the top for reading
annotation files (never done here), so a stand-in that fails if used takes its place.

correctness (resnet18, batches of real crops, squatpose.train.train_step, deterministic kernels):
    fp32 and bf16 autocast give the same losses within 1% over 3 steps from the same weights;
    channels_last gives the outputs of contiguous tensors (fp32, TF32 off);
    one-process DistributedDataParallel (NCCL, world size 1) ends with the plain model's weights;
    a run saved after 2 steps and resumed into fresh objects ends with the uninterrupted run's
    weights: in training's precision (bf16), and in fp16 with an enabled GradScaler.
throughput: training samples/s and peak GPU memory of every architecture at batch 64 and 128,
    bf16 autocast + channels_last + cudnn.benchmark, eager and torch.compile'd; the sample's crops
    tiled to the batch on the GPU (the step, not the loader); warm-up steps untimed.
loader: samples/s of a DataLoader over ShardDataset (batch 128, drawn with replacement, pinned
    and copied to the GPU) with 16 worker processes and with none, after a warm-up epoch.
targets: resnet18 >= 5,000 samples/s on one H100 at 192 x 256; the loader >= 2x that.

A global time budget (--budget-s, counted from the start) bounds the run: throughput rows past it
are printed as "skipped (budget)" (a compiled one starts only with 60 s of it left, about what its
compile takes). Exits 1 if a check fails.

--dry-run: every code path on the CPU in a minute or two: batch 2, one timed step, the checks on
mobilenet (the fastest on a CPU), throughput in fp32 (bf16 is emulated on a CPU without bf16
instructions: ~15 s a resnet18 step), torch.compile of resnet18 only with the aot_eager backend
(no code generation), gloo instead of NCCL, a loader of 0 and 1 workers.
"""

import argparse
import contextlib
import gc
import json
import math
import os
import socket
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, set before CUDA starts

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler, default_collate  # noqa: E402


def stand_in_for_pycocotools() -> None:
    """Put a `pycocotools.coco` whose COCO raises in sys.modules, before squatpose.coco imports it."""
    if "pycocotools" in sys.modules:
        return

    class COCO:
        def __init__(self, *args, **kwargs):
            raise ImportError("pycocotools is not loaded by benchmarks/gpu_check.py")

    package, coco = types.ModuleType("pycocotools"), types.ModuleType("pycocotools.coco")
    package.__path__, package.coco, coco.COCO = [], coco, COCO
    package.stand_in = True
    sys.modules.update({"pycocotools": package, "pycocotools.coco": coco})


stand_in_for_pycocotools()

from squatpose.codec import Codec, make_codec  # noqa: E402
from squatpose.config import CropConfig, load_params  # noqa: E402
from squatpose.dataset import ShardDataset, crops_to_tensor  # noqa: E402
from squatpose.models import ARCHITECTURES, build  # noqa: E402
from squatpose.train import autocast_dtype, train_step  # noqa: E402

TARGET = 5000  # resnet18 training samples/s on one H100 at 192 x 256 (issue 14)
LOADER_FACTOR = 2  # the loader must deliver this many times TARGET
LOSS_RTOL = 0.01  # fp32 vs bf16 losses
# channels_last vs contiguous, fp32 with TF32 off: the layouts differ only in the kernels' order of
# summation, ~1e-6 of the values per layer; 1e-3 of the output's scale leaves room for ~20 layers and
# batch norm, while a mixed-up layout (channels or pixels swapped) differs by the output's own scale
LAYOUT_RTOL = 1e-3


@dataclass(frozen=True)
class Sizes:
    """What one run measures: the full GPU check, or the CPU dry run."""
    batches: tuple[int, ...]  # throughput batch sizes
    warmup: int  # untimed steps before the timed ones (the first compiles)
    steps: int  # timed steps
    amp: bool  # throughput in bf16 autocast
    compile_backend: str
    compiled_archs: int  # how many architectures (in ARCHITECTURES order) are also compiled
    compile_reserve_s: float  # budget a compiled configuration needs left to start (about its compile)
    check_model: str
    check_batch: int
    resume_steps: int  # steps before the save, and again after it
    loader_workers: tuple[int, ...]
    loader_batch: int
    loader_batches: int  # per epoch with workers; a quarter of it (at least 2) with none


FULL = Sizes(batches=(64, 128), warmup=5, steps=20, amp=True, compile_backend="inductor",
             compiled_archs=len(ARCHITECTURES), compile_reserve_s=60, check_model="resnet18", check_batch=32,
             resume_steps=2, loader_workers=(16, 0), loader_batch=128, loader_batches=200)
DRY = Sizes(batches=(2,), warmup=1, steps=1, amp=False, compile_backend="aot_eager", compiled_archs=1,
            compile_reserve_s=0, check_model="mobilenet", check_batch=2, resume_steps=1, loader_workers=(1, 0),
            loader_batch=8, loader_batches=8)


def real_batch(ds: ShardDataset, step: int, size: int) -> dict:
    """Batch `step` of `size` consecutive crops (wrapping around the sample), as the DataLoader gives it."""
    return default_collate([ds[(step * size + i) % len(ds)] for i in range(size)])


def fresh(arch: str, codec: Codec, device: torch.device, seed: int = 0,
          scaler_on: bool = False) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.amp.GradScaler]:
    """A model initialised from `seed`, its Adam (training's settings) and a GradScaler."""
    torch.manual_seed(seed)
    model = build(arch, codec).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    return model, optimizer, torch.amp.GradScaler(device.type, enabled=scaler_on)


def run_steps(net: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, ds: ShardDataset,
              codec: Codec, device: torch.device, amp: torch.dtype | None, steps: range, size: int) -> list[float]:
    """Training steps on the real batches numbered `steps`; their losses."""
    return [float(train_step(net, optimizer, scaler, real_batch(ds, s, size), codec, None, None, device, amp))
            for s in steps]


def max_diff(a: dict, b: dict) -> float:
    """Largest absolute difference between two state dicts (weights and buffers)."""
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@contextlib.contextmanager
def deterministic():
    """Deterministic kernels, no TF32 and no autotuning: equal inputs give bit-equal results."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def check_row(check: str, item: str, passed: bool, result: str) -> dict:
    return {"section": "correctness", "check": check, "item": item, "result": result,
            "status": "ok" if passed else "FAIL"}


def guarded(check: str, fn: Callable[..., dict], *args) -> dict:
    """fn(*args), or a failed row of `check` when it raises: one broken check must not cost the rest."""
    try:
        return fn(*args)
    except Exception as e:
        return check_row(check, f"{check}: did not run", False, error(e))


def error(e: Exception) -> str:
    return f"error: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"


def check_bf16(ds: ShardDataset, codec: Codec, device: torch.device, sizes: Sizes) -> dict:
    """fp32 and bf16 autocast: the losses of the same 3 steps from the same weights within LOSS_RTOL."""
    losses = {}
    for amp in (None, torch.bfloat16):
        model, optimizer, scaler = fresh(sizes.check_model, codec, device)
        losses[amp] = run_steps(model, optimizer, scaler, ds, codec, device, amp, range(3), sizes.check_batch)
    fp32, bf16 = losses[None], losses[torch.bfloat16]
    rel = [abs(b - a) / abs(a) for a, b in zip(fp32, bf16)]
    passed = all(math.isfinite(r) and r <= LOSS_RTOL for r in rel)
    return check_row("bf16", f"{sizes.check_model}: fp32 vs bf16 autocast losses, 3 steps", passed,
                     f"fp32 {', '.join(f'{x:.5g}' for x in fp32)}; bf16 {', '.join(f'{x:.5g}' for x in bf16)}; "
                     f"max rel diff {max(rel):.3%} (<= {LOSS_RTOL:.0%})")


def check_channels_last(val_ds: ShardDataset, codec: Codec, device: torch.device, sizes: Sizes) -> dict:
    """The same model's fp32 output on a val batch, contiguous and channels_last, within LAYOUT_RTOL of its scale."""
    model = fresh(sizes.check_model, codec, device)[0]
    image = crops_to_tensor(real_batch(val_ds, 0, sizes.check_batch)["image"].to(device))
    with torch.no_grad():
        plain = model(image)
        model = model.to(memory_format=torch.channels_last)
        nhwc = model(image.contiguous(memory_format=torch.channels_last))
    diff, scale = float((plain - nhwc).abs().max()), float(plain.abs().max())
    where = "" if device.type == "cuda" else " (CPU kernels, not cuDNN's)"
    return check_row("channels_last", f"{sizes.check_model}: channels_last vs contiguous output (fp32, TF32 off)",
                     diff <= LAYOUT_RTOL * scale,
                     f"max abs diff {diff:.3g}, tolerance {LAYOUT_RTOL * scale:.3g} ({LAYOUT_RTOL:g} x max |output| "
                     f"{scale:.3g}){where}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_ddp(ds: ShardDataset, codec: Codec, device: torch.device, sizes: Sizes) -> dict:
    """DistributedDataParallel in one process (world size 1) ends 3 steps with the plain model's weights."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    amp = autocast_dtype(True, device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        plain, optimizer, scaler = fresh(sizes.check_model, codec, device)
        run_steps(plain, optimizer, scaler, ds, codec, device, amp, range(3), sizes.check_batch)
        model, optimizer, scaler = fresh(sizes.check_model, codec, device)
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        run_steps(net, optimizer, scaler, ds, codec, device, amp, range(3), sizes.check_batch)
    finally:
        dist.destroy_process_group()
    diff = max_diff(plain.state_dict(), model.state_dict())
    note = "" if device.type == "cuda" else "; gloo on the CPU, not NCCL"
    return check_row("ddp", f"{sizes.check_model}: DDP ({backend}, world size 1) vs plain weights after 3 steps",
                     diff == 0, f"max abs diff {diff:.3g} (must be 0); {dtype_name(amp)}{note}")


def dtype_name(amp: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[amp]


def check_resume(ds: ShardDataset, codec: Codec, device: torch.device, sizes: Sizes, amp: torch.dtype | None) -> dict:
    """Train k steps, save model, optimizer and GradScaler, load them into fresh objects (built from
    another seed), train k more: the weights (and scale) of an uninterrupted 2k-step run."""
    k, size, scaler_on = sizes.resume_steps, sizes.check_batch, amp == torch.float16
    whole, optimizer, scaler = fresh(sizes.check_model, codec, device, scaler_on=scaler_on)
    run_steps(whole, optimizer, scaler, ds, codec, device, amp, range(2 * k), size)
    whole_scale = scaler.get_scale() if scaler_on else None

    model, optimizer, scaler = fresh(sizes.check_model, codec, device, scaler_on=scaler_on)
    run_steps(model, optimizer, scaler, ds, codec, device, amp, range(k), size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.pt"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict()}, path)
        saved = torch.load(path, map_location=device, weights_only=True)
    model, optimizer, scaler = fresh(sizes.check_model, codec, device, seed=1, scaler_on=scaler_on)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if scaler_on:
        scaler.load_state_dict(saved["scaler"])
    run_steps(model, optimizer, scaler, ds, codec, device, amp, range(k, 2 * k), size)

    diff = max_diff(whole.state_dict(), model.state_dict())
    same_scale = not scaler_on or scaler.get_scale() == whole_scale
    scale = f"; GradScaler scale {scaler.get_scale():g} vs {whole_scale:g}" if scaler_on else ""
    label = "training's precision" if amp == autocast_dtype(True, device) else "with an enabled GradScaler"
    return check_row("resume_scaler" if scaler_on else "resume",
                     f"{sizes.check_model}: resume after {k} step(s) vs {2 * k} uninterrupted, {label}",
                     diff == 0 and same_scale, f"max abs diff {diff:.3g} (must be 0); {dtype_name(amp)}{scale}")


def check_imports() -> dict:
    """Neither pycocotools (only its stand-in), mlflow nor dvc is loaded."""
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {"mlflow", "dvc"})
    real_coco = not getattr(sys.modules.get("pycocotools"), "stand_in", True)
    bad = loaded + ["pycocotools"] * real_coco
    return {"section": "environment", "check": "imports", "item": "pycocotools, mlflow and dvc not imported",
            "result": f"loaded: {', '.join(bad)}" if bad else "none loaded (pycocotools: the stand-in)",
            "status": "FAIL" if bad else "ok"}


def tiled(ds: ShardDataset, size: int, device: torch.device) -> dict:
    """The sample's crops repeated to `size`, on the device (uint8 images: train_step normalises them)."""
    batch = real_batch(ds, 0, len(ds))
    reps = -(-size // len(ds))
    out = {k: batch[k].to(device).repeat(reps, *[1] * (batch[k].dim() - 1))[:size]
           for k in ("image", "kp_crop", "in_crop")}
    return out


def throughput(arch: str, size: int, compiled: bool, ds: ShardDataset, codec: Codec, device: torch.device,
               sizes: Sizes) -> dict:
    """Training samples/s of `arch` at batch `size`, its peak GPU memory (MiB) over the timed steps,
    and the seconds of its first step (the compile, when compiled)."""
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build(arch, codec).to(device, memory_format=torch.channels_last).train()
    if compiled:
        torch._dynamo.reset()  # every compiled model shares PoseNet.forward: no recompile limit
        net = torch.compile(model, backend=sizes.compile_backend, dynamic=False)
    else:
        net = model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    amp = torch.bfloat16 if sizes.amp else None
    batch = tiled(ds, size, device)

    def step() -> torch.Tensor:
        return train_step(net, optimizer, scaler, batch, codec, None, None, device, amp)

    t0 = time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize()
    first = time.perf_counter() - t0
    for _ in range(sizes.warmup - 1):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(sizes.steps):
        loss = step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    if not math.isfinite(float(loss)):
        raise FloatingPointError(f"loss {float(loss)}")
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return {"samples_per_s": size * sizes.steps / seconds, "peak_mib": peak, "first_step_s": first}


def configs(sizes: Sizes) -> tuple[list[tuple], list[tuple]]:
    """(architecture, batch, compiled) to measure: the eager ones, and the compiled ones in the order
    they are worth the budget (resnet18 first, then larger batches first)."""
    eager = [(a, b, False) for a in ARCHITECTURES for b in sizes.batches]
    compiled = [(a, b, True) for a in list(ARCHITECTURES)[:sizes.compiled_archs] for b in sizes.batches]
    return eager, sorted(compiled, key=lambda c: (c[0] != "resnet18", -c[1]))


def measure(todo: list[tuple], ds: ShardDataset, codec: Codec, device: torch.device, sizes: Sizes,
            deadline: float) -> dict:
    """config -> throughput() and a status, "skipped (budget)" once too little of it is left."""
    results = {}
    for config in todo:
        arch, size, compiled = config
        if deadline - time.perf_counter() < (sizes.compile_reserve_s if compiled else 0):
            results[config] = {"status": "skipped (budget)"}
            continue
        try:
            results[config] = {**throughput(arch, size, compiled, ds, codec, device, sizes), "status": "ok"}
        except Exception as e:  # one model failing to compile or fit must not cost the rest of the table
            results[config] = {"status": error(e)}
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def throughput_rows(results: dict, sizes: Sizes) -> list[dict]:
    """Table rows of measure()'s results, by architecture, batch, eager then compiled."""
    rows = []
    for arch in ARCHITECTURES:
        for size in sizes.batches:
            for compiled in (False, True):
                r = results.get((arch, size, compiled), {"status": "skipped (dry run)"})
                first = r.get("first_step_s")
                how = f"compiled ({sizes.compile_backend})" if compiled else "eager"
                rows.append({"section": "throughput", "item": f"{arch}, batch {size}, {how}", "arch": arch,
                             "batch": size, "compiled": compiled, "samples_per_s": r.get("samples_per_s"),
                             "peak_mib": r.get("peak_mib"), "status": r["status"],
                             "result": f"first step {first:.1f} s" if first is not None else ""})
    return rows


def loader_rate(ds: ShardDataset, workers: int, sizes: Sizes, device: torch.device) -> float:
    """Samples/s of a DataLoader over `ds` (drawn with replacement; images copied to `device`), timed
    over its second epoch: the first starts the workers and warms the page cache."""
    cuda = device.type == "cuda"
    batches = sizes.loader_batches if workers else max(2, sizes.loader_batches // 4)
    sampler = RandomSampler(ds, replacement=True, num_samples=batches * sizes.loader_batch,
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=sizes.loader_batch, sampler=sampler, num_workers=workers,
                        pin_memory=cuda, persistent_workers=workers > 0)
    for _ in range(2):
        if cuda:
            torch.cuda.synchronize()
        t0, n = time.perf_counter(), 0
        for batch in loader:
            batch["image"].to(device, non_blocking=True)
            n += len(batch["image"])
        if cuda:
            torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def loader_rows(ds: ShardDataset, sizes: Sizes, device: torch.device) -> list[dict]:
    """One row per number of workers."""
    rows = []
    for workers in sizes.loader_workers:
        row = {"section": "loader", "item": f"DataLoader, {workers} worker{'s' * (workers != 1)}, "
                                            f"batch {sizes.loader_batch}",
               "workers": workers, "samples_per_s": None, "peak_mib": None,
               "result": "pinned, copied to the GPU" if device.type == "cuda" else "", "status": "ok"}
        try:
            row["samples_per_s"] = loader_rate(ds, workers, sizes, device)
        except Exception as e:
            row["status"] = error(e)
        rows.append(row)
    return rows


def number(v: float | None) -> str:
    """A rate or size for the table: whole numbers from 100 on, 3 significant digits below."""
    return "" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def target_rows(rows: list[dict], device: torch.device) -> list[dict]:
    """Whether resnet18's best rate reaches TARGET, and the loader's (most workers) LOADER_FACTOR x TARGET."""
    note = "" if device.type == "cuda" else " (CPU dry run)"
    step = [r for r in rows if r.get("arch") == "resnet18" and r["samples_per_s"]]
    best = max(step, key=lambda r: r["samples_per_s"], default=None)
    loaders = [r for r in rows if r["section"] == "loader"]
    loader = max(loaders, key=lambda r: r["workers"])
    out = []
    for item, rate, goal, how in [
            (f"resnet18 >= {TARGET:,} samples/s", best and best["samples_per_s"], TARGET, best and best["item"]),
            (f"loader >= {LOADER_FACTOR * TARGET:,} samples/s ({LOADER_FACTOR}x the target)", loader["samples_per_s"],
             LOADER_FACTOR * TARGET, loader["item"])]:
        result = f"{number(rate)} samples/s: {how}" if rate else "not measured"
        if rate and best and "loader" in item:
            result += f"; {rate / best['samples_per_s']:.1f}x resnet18's best step rate"
        out.append({"section": "target", "item": item, "samples_per_s": rate, "peak_mib": None, "result": result,
                    "status": ("met" if rate and rate >= goal else "not met") + note})
    return out


def print_table(header: list[str], rows: list[dict]) -> None:
    """The header lines, then the rows in aligned columns (numbers right-aligned)."""
    columns = [("section", "section", str), ("item", "item", str), ("samples_per_s", "samples/s", number),
               ("peak_mib", "peak MiB", number), ("status", "status", str), ("result", "result", str)]
    cells = [[name for _, name, _ in columns]] + [[fmt(r.get(key)) for key, _, fmt in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    print("\n".join(header) + "\n")
    for line in cells:
        print("  ".join(c.rjust(w) if fmt is number else c.ljust(w)
                        for c, w, (_, _, fmt) in zip(line, widths, columns)).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the CPU at tiny sizes: every code path, no GPU")
    parser.add_argument("--budget-s", type=float, default=480, help="seconds from the start after which "
                        "throughput rows are skipped (default 480)")
    parser.add_argument("--shards", default="data/shards/sample", help="shard sets train/ and val/")
    parser.add_argument("--out", help="also write the rows as JSON to this file")
    args = parser.parse_args()
    start = time.perf_counter()
    deadline = start + args.budget_s
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here: run it on the GPU machine, "
                 "or pass --dry-run for a CPU run at tiny sizes")
    sizes = DRY if args.dry_run else FULL
    device = torch.device("cpu") if args.dry_run else torch.device("cuda", 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    train_ds, val_ds = ShardDataset(Path(args.shards) / "train"), ShardDataset(Path(args.shards) / "val")
    crop = CropConfig(**train_ds.index["crop"])
    codec = make_codec(load_params().codec, crop)

    with deterministic():
        rows = [guarded("bf16", check_bf16, train_ds, codec, device, sizes),
                guarded("channels_last", check_channels_last, val_ds, codec, device, sizes),
                guarded("ddp", check_ddp, train_ds, codec, device, sizes),
                guarded("resume", check_resume, train_ds, codec, device, sizes, autocast_dtype(True, device)),
                guarded("resume_scaler", check_resume, train_ds, codec, device, sizes, torch.float16)]
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    eager, compiled = configs(sizes)
    results = measure(eager, train_ds, codec, device, sizes, deadline)
    loader = loader_rows(train_ds, sizes, device)  # before the compiles, which may use up the budget
    results |= measure(compiled, train_ds, codec, device, sizes, deadline)
    rows += throughput_rows(results, sizes) + loader
    rows += target_rows(rows, device) + [check_imports()]

    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} thread(s) (dry run)")
    versions = f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if device.type == "cuda" else ""
    header = [f"{where}; torch {torch.__version__}{versions}",
              f"data: {len(train_ds)} train + {len(val_ds)} val crops of {crop.width}x{crop.height} from "
              f"{args.shards}; checks on {sizes.check_model}, batch {sizes.check_batch}",
              f"throughput: {'bf16 autocast' if sizes.amp else 'fp32'} + channels_last, {sizes.warmup} warm-up + "
              f"{sizes.steps} timed steps, the crops tiled to the batch on the device",
              f"budget {args.budget_s:g} s, {time.perf_counter() - start:.0f} s used"]
    print_table(header, rows)
    if args.out:
        Path(args.out).write_text(json.dumps({"device": where, "torch": torch.__version__, "dry_run": args.dry_run,
                                              "header": header, "rows": rows}, indent=2) + "\n")
    if any(r["status"] == "FAIL" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
