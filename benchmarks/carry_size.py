"""Can a shard set travel to the lent GPU machine? Its crops as JPEG at a few scales and qualities,
in MiB for the whole set, next to the room a device call leaves beside the tracked tree.

    python benchmarks/carry_size.py SHARDS [SHARDS ...] [--sample 300] [--limit-mib 64]

A device call carries at most --limit-mib of the working tree (tracked files included); the
crops would be packed as one JPEG each (downscaled by `scale`, upscaled back on arrival). For
each (scale, quality) the table gives the mean KiB per crop and the total for every person of
the SHARDS (measured on --sample random crops of them), and the mean absolute pixel error of
the round trip (0-255).
"""

import argparse
import os
import subprocess

import cv2
import numpy as np

from squatpose.dataset import ShardDataset

SCALES = (1.0, 0.75, 0.625, 0.5)
QUALITIES = (90, 80, 70)


def round_trip(crop: np.ndarray, scale: float, quality: int) -> tuple[int, np.ndarray]:
    """(JPEG bytes, the crop decoded and resized back) of an RGB crop stored at `scale`."""
    h, w = crop.shape[:2]
    small = cv2.resize(crop, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) \
        if scale < 1 else crop
    ok, buf = cv2.imencode(".jpg", small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    back = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return len(buf), cv2.resize(back, (w, h), interpolation=cv2.INTER_LINEAR) if scale < 1 else back


def tracked_mib() -> float:
    """MiB of the files git tracks here (what every device call carries before any data)."""
    files = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout.split(b"\0")
    return sum(os.path.getsize(f) for f in files if f and os.path.isfile(f)) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shards", nargs="+", help="shard sets (e.g. a run's shards-192x256/train and val)")
    parser.add_argument("--sample", type=int, default=300, help="crops measured per shard set")
    parser.add_argument("--limit-mib", type=float, default=64.0)
    args = parser.parse_args()
    sets = [ShardDataset(s) for s in args.shards]
    persons = sum(len(ds) for ds in sets)
    crops = [np.array(ds.array("images", int(i))) for ds in sets
             for i in np.random.default_rng(0).choice(len(ds), min(args.sample, len(ds)), replace=False)]
    tracked = tracked_mib()
    room = args.limit_mib - tracked
    h, w = crops[0].shape[:2]
    print(f"{persons} persons, {w}x{h} crops; the tracked tree is {tracked:.1f} MiB, "
          f"leaving {room:.1f} MiB of the {args.limit_mib:g} MiB a call carries\n")
    print("| stored at | JPEG quality | KiB per crop | MiB for all | fits | mean abs error |\n|---|---:|---:|---:|---|---:|")
    for scale in SCALES:
        for q in QUALITIES:
            sizes, errors = [], []
            for crop in crops:
                n, back = round_trip(crop, scale, q)
                sizes.append(n)
                errors.append(np.abs(back.astype(np.int16) - crop).mean())
            total = np.mean(sizes) * persons / 2**20
            print(f"| {round(w * scale)}x{round(h * scale)} | {q} | {np.mean(sizes) / 1024:.1f} | {total:.1f} | "
                  f"{'yes' if total <= room else 'no'} | {np.mean(errors):.2f} |")


if __name__ == "__main__":
    main()
