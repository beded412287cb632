"""DVC stage `subsets`: person tables of every split and subset, and their counts."""

import argparse
import json

from squatpose.errors import guarded
from squatpose.config import load_params
from squatpose.subsets import write_subsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", required=True, help="folder in COCO layout (the download stage's output)")
    parser.add_argument("--out", required=True, help="folder for <split>-<subset>.parquet")
    parser.add_argument("--metrics", required=True, help="JSON file for the counts")
    args = parser.parse_args()
    counts = write_subsets(args.raw, args.out, args.metrics, load_params().subsets)
    print(json.dumps(counts))


if __name__ == "__main__":
    guarded(main)
