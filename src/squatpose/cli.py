"""The `squatpose` command."""

import argparse
import dataclasses

from squatpose import __version__
from squatpose.errors import guarded
from squatpose.squat.settings import VIEWS, Settings


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


def _analyze(args: argparse.Namespace) -> None:
    """Joints, angles, reps and feedback of one image or video."""
    from pathlib import Path

    from squatpose.pose_model import load_pose_model
    from squatpose.squat.analyze import analyze
    from squatpose.squat.boxes import PersonDetector, parse_box
    from squatpose.squat.video import open_source

    box = parse_box(args.box) if args.box else None
    d = Settings()
    settings = dataclasses.replace(
        d, confidence=args.confidence, view=args.view,
        smoothing=dataclasses.replace(d.smoothing, min_cutoff=args.min_cutoff, beta=args.beta, d_cutoff=args.d_cutoff),
        reps=dataclasses.replace(d.reps, depth_in=args.depth_in, depth_out=args.depth_out))
    source = open_source(args.input)  # a bad input is refused before any model is loaded
    model = load_pose_model(args.model or default_model(), args.backend, args.threads)
    detector = None if box is not None else PersonDetector()
    out = Path(args.out or Path("analysis") / Path(args.input).stem)
    result = analyze(args.input, model, out, box, detector, settings, progress=not args.quiet, source=source)
    s = result.summary
    print(f"{s['input']}: {s['frames_analysed']} frames analysed ({s['frames_with_confident_joints']} with "
          f"confident joints), {s['view']} view, legs {', '.join(s['legs_reported'])}; "
          f"{len(s['reps'])} reps; model {s['model']['path']} ({s['model']['backend']})")
    for line in s["feedback"] + [f"note: {m}" for m in s["messages"]]:
        print(f"  {line}")
    print(f"outputs in {out}/: {', '.join(s['outputs'])}")


def default_model() -> str:
    """The model shipped inside the package (squatpose/weights/lower_body.pt, see docs/MODEL_CARD.md)."""
    from squatpose.errors import SquatposeError
    from squatpose.weights import SHIPPED

    if not SHIPPED.is_file():
        raise SquatposeError(f"{SHIPPED}: the shipped model is missing from this installation; pass --model")
    return str(SHIPPED)


def _export(args: argparse.Namespace) -> None:
    """ONNX export of a checkpoint, checked against PyTorch."""
    from pathlib import Path

    from squatpose.export import AGREEMENT, export_onnx

    ckpt = Path(args.checkpoint or default_model())
    out = Path(args.out) if args.out else Path("exports") / f"{ckpt.parent.name if ckpt.stem == 'model' else ckpt.stem}.onnx"
    diff = export_onnx(ckpt, out)
    print(f"{out}: ONNX export of {ckpt}; outputs agree with PyTorch to {diff:.1e} (limit {AGREEMENT:g})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="squatpose",
        description="2D lower-body keypoints (hips, knees, ankles) and squat analysis. "
                    "The training pipeline runs through `dvc repro` (see README.md and docs/pipeline.md).",
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
                                   "and docs/pipeline.md for the joint, visibility and bbox mapping.")
    p.add_argument("joints", help="joints.mat of LSP (3 x 14 x N) or LSP Extended (14 x 3 x N)")
    p.add_argument("images", help="folder of im00001.jpg ... (LSP Extended) or im0001.jpg ... (LSP)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", action="append", metavar="NAME=FIRST-LAST",
                   help="image numbers (1-based, inclusive) of a split; repeat, e.g. --split train=1-7000 "
                        "--split val=7001-8000 (default: one split 'all' of every image)")
    p.set_defaults(func=_import_lsp)
    p = sub.add_parser("analyze", help="squat analysis of an image or a video: joints, angles, reps, feedback",
                       description="Writes OUT/frames.csv (per frame: box, joints with confidence, angles, rep), "
                                   "OUT/summary.json (reps, feedback, settings, model), OUT/knee_angle.png and "
                                   "OUT/overlay.mp4 (overlay.png for an image). See docs/squat-analysis.md.")
    p.add_argument("input", help="an image or a video (any format OpenCV reads)")
    p.add_argument("--model", help="model.pt from the pipeline or its .onnx export (default: the model shipped "
                                   "with squatpose, docs/MODEL_CARD.md)")
    p.add_argument("--out", help="output folder (default: analysis/<input name>)")
    p.add_argument("--box", metavar="X,Y,W,H", help="the person's box in the first frame, in pixels; for a legs-only "
                   "video, where the whole person would be, running above the frame (default: torchvision's "
                   "person detector, weights downloaded once)")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="auto: by the model file's suffix; onnx with a .pt exports it once into the cache "
                        "(~/.cache/squatpose/onnx, or $SQUATPOSE_CACHE/onnx)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the model (0: library default)")
    d = Settings()  # the defaults
    p.add_argument("--confidence", type=float, default=d.confidence,
                   help="heatmap peak below which a joint is flagged and not used (default %(default)s)")
    p.add_argument("--view", choices=VIEWS, default=d.view, help="camera view (default: %(default)s, guessed)")
    p.add_argument("--min-cutoff", type=float, default=d.smoothing.min_cutoff,
                   help="One Euro filter: cut-off at rest, Hz (default %(default)s)")
    p.add_argument("--beta", type=float, default=d.smoothing.beta,
                   help="One Euro filter: speed coefficient, per leg length per second (default %(default)s)")
    p.add_argument("--d-cutoff", type=float, default=d.smoothing.d_cutoff,
                   help="One Euro filter: speed cut-off, Hz (default %(default)s)")
    p.add_argument("--depth-in", type=float, default=d.reps.depth_in,
                   help="a rep starts this many degrees of knee bend below standing (default %(default)s)")
    p.add_argument("--depth-out", type=float, default=d.reps.depth_out,
                   help="a rep ends when the knee is back within this many degrees of standing "
                        "(default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_analyze)
    p = sub.add_parser("export", help="export a checkpoint to ONNX (for the fast onnxruntime path of analyze)",
                       description="Writes the checkpoint's model as one self-contained ONNX file (weights and "
                                   "the checkpoint's metadata inside), checked against PyTorch on random crops; "
                                   "refused if they disagree (squatpose.export.AGREEMENT). Run it with "
                                   "`squatpose analyze --model FILE.onnx`.")
    p.add_argument("checkpoint", nargs="?", help="model.pt from the pipeline (default: the shipped model)")
    p.add_argument("--out", help="the .onnx file (default: exports/<row>.onnx, outside the pipeline's outputs)")
    p.set_defaults(func=_export)
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
