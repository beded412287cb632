"""DVC stage `report`: the results table of every row, the headline metrics of `model`, and every
row's training history in one table for the plots."""

import argparse

from squatpose.errors import guarded
from squatpose.config import load_params
from squatpose.report import to_markdown, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", required=True, help="folder of <row>.json: each row's summary metrics")
    parser.add_argument("--details", required=True, help="folder of <row>.json: each row's full metrics")
    parser.add_argument("--history", required=True, help="folder of <row>.csv: each row's training history")
    parser.add_argument("--reference", help="full metrics of the shipped model (stage reference): a last row")
    parser.add_argument("--out", required=True, help="folder for results.md, results.csv, metrics.json, history.csv")
    args = parser.parse_args()
    table = write_report(load_params(), args.metrics, args.details, args.history, args.out, args.reference)
    print(to_markdown(table))


if __name__ == "__main__":
    guarded(main)
