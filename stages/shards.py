"""DVC stage `shards`: person crops and keypoints of one split, in resumable shards."""

import argparse

import pandas as pd

from squatpose.errors import guarded
from squatpose.config import load_params
from squatpose.shards import write_shards
from squatpose.subsets import subset_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", required=True, choices=["train", "val"])
    parser.add_argument("--subsets", required=True, help="folder of the subset tables")
    parser.add_argument("--out", required=True, help="shard folder of this split")
    args = parser.parse_args()
    params = load_params()
    table = pd.read_parquet(subset_path(args.subsets, args.split, params.shards.subset))
    index = write_shards(table, args.out, params.crop, params.shards.shard_size, params.shards.workers)
    print(f"{args.out}: {index['samples']} samples in {len(index['shards'])} shards, "
          f"{len(index['skipped'])} persons skipped")


if __name__ == "__main__":
    guarded(main)
