"""The `squatpose` command, and the error handling every entry point shares."""

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from squatpose import __version__
from squatpose.errors import SquatposeError


def guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn` with plain logging; a `SquatposeError` becomes one line on stderr and exit 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return fn(*args, **kwargs)
    except SquatposeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; run again to resume", file=sys.stderr)
        sys.exit(130)


def _validate(args: argparse.Namespace) -> None:
    """Check a COCO keypoint file (and its images) and print what the pipeline would use."""
    from pathlib import Path

    from squatpose.coco import person_records
    from squatpose.subsets import lower

    ann = Path(args.annotations)
    images = Path(args.images) if args.images else ann.parent.parent / ann.stem.split("_")[-1]
    table, report = person_records(ann, images)
    print(f"{ann}: {report.persons} persons with lower-body joints "
          f"({len(lower(table))} with all six labeled), images from {images}")
    print(f"  crowd annotations ignored: {report.crowd_ignored}")
    for reason, n in report.skipped.items():
        print(f"  skipped, {reason.replace('_', ' ')}: {n}")
    print(f"  labeled joints outside their image, dropped: {report.joints_outside_image}")


def _import_lsp(args: argparse.Namespace) -> None:
    """Convert LSP / LSP Extended annotations to COCO keypoint files."""
    from pathlib import Path

    from squatpose.lsp import import_lsp, parse_splits

    counts = import_lsp(args.joints, args.images, args.out, parse_splits(args.split) if args.split else None)
    for c in counts.values():
        print(f"{c['path']}: {c['persons']} persons ({c['layout']}); left out: {c['missing_image']} images "
              f"not found, {c['unreadable_image']} unreadable, {c['too_few_joints']} with fewer than 2 "
              "labeled joints")
    if {"train", "val"} <= set(counts):
        images = Path(args.images).resolve()
        print("train on it with:\n  dvc exp run -S data.source=coco_dir "
              f"-S data.train_annotations={Path(counts['train']['path']).resolve()} -S data.train_images={images} "
              f"-S data.val_annotations={Path(counts['val']['path']).resolve()} -S data.val_images={images}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="squatpose",
        description="2D lower-body keypoints (hips, knees, ankles) and squat analysis. "
                    "The training pipeline runs through `dvc repro` (see README.md).",
    )
    parser.add_argument("--version", action="version", version=f"squatpose {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("validate", help="check a COCO keypoint annotation file and its images")
    p.add_argument("annotations", help="COCO keypoints JSON, e.g. annotations/person_keypoints_val2017.json")
    p.add_argument("--images", help="image folder (default: ../<split>2017 beside the annotations folder)")
    p.set_defaults(func=_validate)
    p = sub.add_parser("import-lsp", help="convert Leeds Sports Pose (LSP / LSP Extended) joints to COCO keypoints",
                       description="Writes OUT/annotations/person_keypoints_<split>.json; images stay where "
                                   "they are (file_name is relative to IMAGES_DIR). See squatpose/lsp.py "
                                   "and README for the joint, visibility and bbox mapping.")
    p.add_argument("joints", help="joints.mat of LSP (3 x 14 x N) or LSP Extended (14 x 3 x N)")
    p.add_argument("images", help="folder of im00001.jpg ... (LSP Extended) or im0001.jpg ... (LSP)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", action="append", metavar="NAME=FIRST-LAST",
                   help="image numbers (1-based, inclusive) of a split; repeat, e.g. --split train=1-7000 "
                        "--split val=7001-8000 (default: one split 'all' of every image)")
    p.set_defaults(func=_import_lsp)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return
    guarded(args.func, args)


if __name__ == "__main__":
    main()
