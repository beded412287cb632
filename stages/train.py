"""DVC stage `train@<row>`: train one row of the results table (also under torchrun)."""

import argparse

from squatpose.errors import guarded
from squatpose.config import load_params
from squatpose.evaluate import validator
from squatpose.train import train_row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--row", required=True, help="a key under rows in params.yaml")
    parser.add_argument("--shards", required=True, help="folder holding the train/ and val/ shard sets")
    parser.add_argument("--subsets", required=True, help="folder of the subset tables")
    parser.add_argument("--out", required=True, help="checkpoint folder of this row")
    parser.add_argument("--history", help="CSV of per-epoch losses and val PCK (a DVC plot)")
    parser.add_argument("--fresh", action="store_true", help="ignore a resumable last.pt and start over")
    args = parser.parse_args()
    params = load_params()
    train_row(args.row, params, args.shards, args.subsets, args.out, args.history, validate=validator(params),
              resume=not args.fresh)


if __name__ == "__main__":
    guarded(main)
