"""Shard read throughput next to the JPEG decode + crop + encode path, on the same persons.

    python benchmarks/shard_read.py [--split val] [--shards data/shards/sample/val] [--subsets data/subsets/sample]

Prints a table of samples/s, single process, for: the memory-mapped ShardDataset with the
targets made by params.yaml's codec from the stored keypoints (as training makes them), the
same through a DataLoader (batch 32, encoded per batch), and the path the shards replace
(decode the JPEG, warp the crop, normalise, encode the targets). Both produce the same tensors
per sample.
"""

import argparse
import time

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from squatpose.codec import in_crop_keypoints, make_codec
from squatpose.config import load_params
from squatpose.dataset import ShardDataset, crops_to_tensor
from squatpose.geometry import warp
from squatpose.imaging import read_image
from squatpose.shards import crop_persons
from squatpose.subsets import subset_path


def timed(fn, n_items: int, repeats: int) -> float:
    """Best samples/s of `repeats` runs of `fn` (which handles `n_items` samples)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_items / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="val")
    parser.add_argument("--shards", help="shard folder (default: data/shards/sample/<split>)")
    parser.add_argument("--subsets", default="data/subsets/sample")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    args.shards = args.shards or f"data/shards/sample/{args.split}"
    torch.set_num_threads(1)
    params = load_params()
    codec = make_codec(params.codec, params.crop)
    table = pd.read_parquet(subset_path(args.subsets, args.split, params.shards.subset))
    ds = ShardDataset(args.shards, table["ann_id"].to_numpy())
    table = table.set_index("ann_id").loc[ds.ann_ids].reset_index()
    n = len(ds)

    def shard_targets(item: dict) -> tuple:
        return codec.encode(in_crop_keypoints(item["kp_crop"], item["in_crop"]))

    def jpeg_targets(kp_crop: np.ndarray) -> tuple:
        """The targets of crop keypoints (N, 6, 3), with the shards' rule: a joint is supervised
        only if labeled and inside the crop."""
        x, y = kp_crop[..., 0], kp_crop[..., 1]
        inside = (kp_crop[..., 2] > 0) & (x >= 0) & (x <= params.crop.width - 1) & (y >= 0) & (y <= params.crop.height - 1)
        return codec.encode(in_crop_keypoints(torch.from_numpy(kp_crop), torch.from_numpy(inside.astype(np.float32))))

    def shards() -> None:
        for i in range(n):
            item = ds[i]
            crops_to_tensor(item["image"])
            shard_targets({k: item[k][None] for k in ("kp_crop", "in_crop")})

    def loader() -> None:
        for batch in DataLoader(ds, batch_size=32, num_workers=0):
            crops_to_tensor(batch["image"])
            shard_targets(batch)

    def jpeg() -> None:
        m, kp_crop = crop_persons(table, params.crop)
        for i, path in enumerate(table["image_path"]):
            crop = warp(read_image(path), m[i], params.crop.width, params.crop.height)
            crops_to_tensor(crop)
            jpeg_targets(kp_crop[i:i + 1])

    # the two paths give the same sample
    m, kp_crop = crop_persons(table.iloc[:1], params.crop)
    crop = warp(read_image(table["image_path"].iloc[0]), m[0], params.crop.width, params.crop.height)
    assert torch.equal(crops_to_tensor(crop), crops_to_tensor(ds[0]["image"]))
    target, weight = jpeg_targets(kp_crop)
    stored_target, stored_weight = shard_targets({k: ds[0][k][None] for k in ("kp_crop", "in_crop")})
    assert torch.equal(target, stored_target) and torch.equal(weight, stored_weight)

    rows = [("shards, ShardDataset[i]", timed(shards, n, args.repeats)),
            ("shards, DataLoader batch 32", timed(loader, n, args.repeats)),
            ("JPEG decode + crop + encode", timed(jpeg, n, args.repeats))]
    base = rows[-1][1]
    print(f"{n} persons of {args.split}, 1 thread, best of {args.repeats}\n")
    print("| path | samples/s | vs JPEG |\n|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / base:.1f}x |")


if __name__ == "__main__":
    main()
