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
