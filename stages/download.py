"""DVC stage `download`: make the chosen data source (`data.source`) available at --out."""

import argparse

from squatpose import download
from squatpose.errors import guarded
from squatpose.config import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True,
                        help="folder to hold annotations/ and train2017/, val2017/ (coco_dir: images.json)")
    args = parser.parse_args()
    params = load_params()
    download.run(params.data, params.download, args.out)


if __name__ == "__main__":
    guarded(main)
