"""DVC stage `report`: the results table of every row and the headline metrics of `model`."""

import argparse

from squatpose.errors import guarded
from squatpose.config import load_params
from squatpose.report import to_markdown, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", required=True, help="folder of <row>.json")
    parser.add_argument("--reference", help="metrics JSON of the shipped model (stage reference): a last row")
    parser.add_argument("--out", required=True, help="folder for results.md, results.csv, metrics.json")
    args = parser.parse_args()
    print(to_markdown(write_report(load_params(), args.metrics, args.out, args.reference)))


if __name__ == "__main__":
    guarded(main)
