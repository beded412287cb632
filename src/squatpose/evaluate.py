"""A model over a validation shard set -> keypoints in original image pixels -> metrics and figures."""

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from squatpose import joints
from squatpose.codec import Codec, codec_from_meta, in_crop_keypoints, make_codec
from squatpose.config import Params
from squatpose.dataset import ShardDataset, crops_to_tensor
from squatpose.errors import SquatposeError
from squatpose.geometry import apply_affine
from squatpose.metrics import knee_angle_error, oks_ap, pck
from squatpose.subsets import subset_path
from squatpose.viz import heatmap_panels, keypoint_grid, write_png


@dataclass
class Predictions:
    kp_crop: np.ndarray  # (N, 6, 2) crop pixels
    confidence: np.ndarray  # (N, 6) the codec's confidence (heatmap or SimCC peaks)
    loss: float  # the codec's mean training loss over the samples
    heatmaps: np.ndarray  # (n_keep, 6, h, w) of the first samples, for figures (codec.to_heatmaps)


@torch.no_grad()
def predict(model: nn.Module, ds: ShardDataset, codec: Codec, batch_size: int = 32,
            flip_test: bool = False, keep_heatmaps: int = 0, device: str | torch.device = "cpu") -> Predictions:
    """Run `model` over `ds` in eval mode; outputs averaged with the flipped crop's if `flip_test`;
    decoded by `codec` (with its decoding)."""
    was_training = model.training
    model.eval()
    kps, confs, kept, total, n = [], [], [], 0.0, 0
    for batch in DataLoader(ds, batch_size=batch_size, shuffle=False):
        image = crops_to_tensor(batch["image"].to(device))
        out = model(image).float()
        loss = codec.loss(out, *codec.encode(in_crop_keypoints(batch["kp_crop"], batch["in_crop"]).to(device)))
        total += float(loss) * len(image)
        n += len(image)
        if flip_test:
            out = (out + codec.flip_back(model(torch.flip(image, dims=[3])).float())) / 2
        kp, conf = codec.decode(out.cpu())
        kps.append(kp.numpy())
        confs.append(conf.numpy())
        if sum(len(k) for k in kept) < keep_heatmaps:
            kept.append(codec.to_heatmaps(out.cpu().numpy()))
    model.train(was_training)
    heatmaps = np.concatenate(kept)[:keep_heatmaps] if kept else np.zeros((0,))
    return Predictions(np.concatenate(kps) if kps else np.zeros((0, joints.NUM_JOINTS, 2)),
                       np.concatenate(confs) if confs else np.zeros((0, joints.NUM_JOINTS)),
                       total / max(n, 1), heatmaps)


def accuracy(pred: Predictions, ds: ShardDataset) -> dict:
    """PCK@0.05/0.1 (overall, per joint), OKS AP and knee-angle error in original image pixels,
    against the ground truth, boxes and areas stored in the shards."""
    kp_img = apply_affine(ds.gather("crop_to_image"), pred.kp_crop)
    gt, boxes = ds.gather("keypoints"), ds.gather("bboxes")
    p05, p10 = pck(kp_img, gt, boxes, 0.05), pck(kp_img, gt, boxes, 0.1)
    return {
        "pck@0.05": p05.pop("overall"),
        "pck@0.1": p10.pop("overall"),
        "pck@0.05_joints": p05,
        "pck@0.1_joints": p10,
        **oks_ap(gt, boxes, ds.gather("areas"), ds.gather("image_ids"), kp_img, pred.confidence),
        "knee_angle": knee_angle_error(kp_img, gt),
    }


def validate(model: nn.Module, ds: ShardDataset, codec: Codec, device: str | torch.device = "cpu",
             batch_size: int = 32) -> tuple[float, float]:
    """(val loss, val PCK@0.05) of `model` on `ds`: what training watches each epoch (NaN PCK
    without persons)."""
    pred = predict(model, ds, codec, batch_size, device=device)
    return pred.loss, accuracy(pred, ds)["pck@0.05"] if len(ds) else float("nan")


def validator(params: Params) -> Callable[[nn.Module, ShardDataset, Codec, torch.device], tuple[float, float]]:
    """`validate` at params' evaluation batch size: what `train_row` takes as `validate`."""
    return functools.partial(validate, batch_size=params.evaluate.batch_size)


def summary(metrics: dict) -> dict:
    """What a user compares between rows and experiments (`dvc metrics show`, `dvc exp show`,
    MLflow), from `evaluate_row`'s full metrics: PCK@0.05 and 0.1, AP, and the knee-angle error
    over both sides (per side, per joint, counts and sizes stay in the full metrics). Few, short
    names, so that a comparison fits a terminal; no wall-clock figures: they differ between machines
    and runs, and live in MLflow and the benchmarks."""
    knee = metrics["knee_angle"]
    sides = [(knee[f"{side}_mae_deg"], knee[f"{side}_n"]) for side in ("left", "right") if knee[f"{side}_n"]]
    knee_mae = sum(mae * n for mae, n in sides) / sum(n for _, n in sides) if sides else float("nan")
    return {"pck@0.05": metrics["pck@0.05"], "pck@0.1": metrics["pck@0.1"], "ap": metrics["ap"],
            "knee_mae_deg": knee_mae}


def evaluate_row(row_name: str, params: Params, model: nn.Module, meta: dict, shards_dir: str | Path,
                 subsets_dir: str | Path, figures_dir: str | Path | None = None,
                 device: str | torch.device = "cpu") -> dict:
    """Metrics of a trained row on its validation subset (the val split of its subset), decoded with
    the codec in the checkpoint's `meta` (params.yaml's for a model without meta) and params.yaml's
    `codec.decoding`."""
    row = params.row(row_name)
    cfg = params.evaluate
    table_path = subset_path(subsets_dir, "val", row.subset)
    ds = ShardDataset.from_subset(shards_dir, table_path)
    codec = codec_from_meta(meta, params.codec.decoding) if "codec" in meta else make_codec(params.codec, params.crop)
    if (codec.crop_w, codec.crop_h) != (ds.index["crop"]["width"], ds.index["crop"]["height"]):
        raise SquatposeError(f"{shards_dir}: crops are {ds.index['crop']['width']}x{ds.index['crop']['height']}, "
                             f"the model takes {codec.crop_w}x{codec.crop_h}")
    pred = predict(model, ds, codec, cfg.batch_size, cfg.flip_test, keep_heatmaps=cfg.figure_persons, device=device)
    metrics = {
        "row": row_name, "model": row.model, "subset": row.subset, "val_persons": len(ds),
        "val_loss": pred.loss, **accuracy(pred, ds),
        "params": meta.get("params"), "macs": meta.get("macs"), "epochs": meta.get("epochs"),
        "train_persons": meta.get("train_persons"),
        "flip_test": cfg.flip_test, "codec": type(codec).__name__, "decoding": getattr(codec, "decoding", None),
    }
    if figures_dir is not None and len(ds):
        write_figures(Path(figures_dir), ds, pred, cfg.figure_persons)
    return metrics


def write_figures(out: Path, ds: ShardDataset, pred: Predictions, n: int) -> None:
    """A grid of val crops with predicted (red) and ground-truth (green) joints, and one crop
    with its six predicted heatmaps overlaid."""
    n = min(n, len(ds))
    crops = np.stack([np.array(ds.array("images", i)) for i in range(n)])
    kp_crop_gt = np.stack([np.array(ds.array("kp_crop", i)) for i in range(n)])
    write_png(out / "predictions.png", keypoint_grid(crops, pred.kp_crop[:n], kp_crop_gt))
    write_png(out / "heatmaps.png", heatmap_panels(crops[0], pred.heatmaps[0]))
