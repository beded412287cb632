"""Training throughput (samples/s) of every architecture: forward, JointsMSELoss, backward, Adam step.

    python benchmarks/train_throughput.py [--batch-size 16] [--steps 5] [--device auto]

Random inputs of the real size (3 x 256 x 192 -> 6 x 64 x 48), so it needs no data; on CUDA with
mixed precision as training uses it. Prints a table with parameters and MACs.
"""

import argparse
import time

import torch

from squatpose.loss import JointsMSELoss
from squatpose.models import ARCHITECTURES, build, count_macs, count_params
from squatpose.device import pick_device


def throughput(name: str, batch: int, steps: int, device: torch.device, amp: bool) -> float:
    torch.manual_seed(0)
    model = build(name).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = JointsMSELoss()
    x = torch.randn(batch, 3, 256, 192, device=device)
    target = torch.rand(batch, 6, 64, 48, device=device)
    weight = torch.ones(batch, 6, device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = loss_fn(model(x), target, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up (cuDNN autotuning, allocator)
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    amp = device.type == "cuda"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{where}, batch {args.batch_size}, {args.steps} timed steps{', bf16 autocast' if amp else ''}\n")
    print("| model | params (M) | GMACs | train samples/s |\n|---|---:|---:|---:|")
    for name in ARCHITECTURES:
        m = build(name)
        rate = throughput(name, args.batch_size, args.steps, device, amp)
        print(f"| {name} | {count_params(m) / 1e6:.2f} | {count_macs(m) / 1e9:.2f} | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
