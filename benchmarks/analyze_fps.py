"""Squat-analysis speed on a CPU: frames per second of every architecture, PyTorch vs ONNX Runtime.

    python benchmarks/analyze_fps.py [--video ../shared/data/squat-videos/squat-side-gym.mp4]
                                     [--crops 192x256,96x128] [--frames 300] [--models dilated,resnet18]

Per architecture and crop size: "model" is the model alone on one crop at a time (what the
backends differ in); "end to end" is `squat.analyze.track` over the video's frames with a fixed
person box: decoding, cropping, model, the codec's decoding (params.yaml's `codec` by default;
`--codec` overrides its kind) and box following. Weights are random (speed does not depend on
them); the ONNX file is `squatpose.export.export_onnx`'s. Both backends run in this one process
with their default threads (all cores), side by side.
"""

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from squatpose.codec import codec_from_meta
from squatpose.config import load_params
from squatpose.export import export_onnx
from squatpose.pose_model import load_pose_model
from squatpose.models import ARCHITECTURES, build, count_macs, save_checkpoint
from squatpose.squat.analyze import track
from squatpose.squat.settings import Settings
from squatpose.squat.video import Source, open_source

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "squat-videos" / "squat-side-gym.mp4"
BOX = np.array([200.0, 320.0, 170.0, 600.0])  # the lifter in squat-side-gym.mp4's first frame (608x1080)


def model_fps(model, width: int, height: int, repeats: int) -> float:
    """Crops per second through `model.outputs`, one crop at a time, after two warm-up calls."""
    crop = np.random.default_rng(0).integers(0, 255, (1, height, width, 3), dtype=np.uint8)
    for _ in range(2):
        model.outputs(crop)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model.outputs(crop)
    return repeats / (time.perf_counter() - t0)


def end_to_end_fps(source: Source, model, frames: int) -> float:
    """Frames per second of `track` over the first `frames` frames of `source`."""
    t0 = time.perf_counter()
    tracked = track(source, model, BOX, None, Settings(), progress=False, max_frames=frames)
    return len(tracked.kp) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--crops", default="192x256,96x128", help="crop sizes WxH, comma-separated")
    parser.add_argument("--frames", type=int, default=300, help="frames of the video per end-to-end run")
    parser.add_argument("--repeats", type=int, default=50, help="model-only calls per measurement")
    parser.add_argument("--models", default=",".join(ARCHITECTURES))
    parser.add_argument("--codec", choices=("heatmap", "simcc"), help="codec kind (default: params.yaml's)")
    args = parser.parse_args()
    codec_cfg = load_params(Path(__file__).resolve().parents[1] / "params.yaml").codec
    if args.codec:
        codec_cfg = dataclasses.replace(codec_cfg, kind=args.codec)
    source = open_source(args.video)
    print(f"{args.video.name}: {source.width}x{source.height}, {source.frame_count} frames; "
          f"{args.frames} frames per end-to-end run; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"codec {dataclasses.asdict(codec_cfg)}")
    header = ("| model | crop | GMACs | model fps PyTorch | model fps ONNX | end-to-end fps PyTorch | "
              "end-to-end fps ONNX | ONNX / PyTorch (end to end) |")
    rows = [header, "|" + "---|" * 8]
    with tempfile.TemporaryDirectory() as tmp:
        for crop in args.crops.split(","):
            w, h = (int(v) for v in crop.split("x"))
            for name in args.models.split(","):
                torch.manual_seed(0)
                meta = {"model": name, "row": f"bench-{name}", "crop": {"width": w, "height": h, "padding": 1.25},
                        "codec": dataclasses.asdict(codec_cfg)}
                net = build(name, codec_from_meta(meta)).eval()
                pt = Path(tmp) / f"{name}-{crop}.pt"
                save_checkpoint(pt, net, meta)
                export_onnx(pt, pt.with_suffix(".onnx"))
                backends = {"torch": load_pose_model(pt), "onnx": load_pose_model(pt.with_suffix(".onnx"))}
                m = {b: model_fps(p, w, h, args.repeats) for b, p in backends.items()}
                e = {b: end_to_end_fps(source, p, args.frames) for b, p in backends.items()}
                rows.append(f"| {name} | {w}x{h} | {count_macs(net, h, w) / 1e9:.2f} | {m['torch']:.1f} | "
                            f"{m['onnx']:.1f} | {e['torch']:.1f} | {e['onnx']:.1f} | {e['onnx'] / e['torch']:.2f}x |")
                print(rows[-1], flush=True)
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
