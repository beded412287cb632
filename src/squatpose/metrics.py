"""Accuracy of predicted keypoints: PCK, OKS-based AP (pycocotools), knee-angle error.

PCK@alpha: a labeled joint (v > 0) is correct when the Euclidean distance between prediction and
ground truth, in original image pixels, is strictly below alpha * max(w, h) of the person's COCO
bbox (mmpose's PCKAccuracy with norm_item='bbox'). Per joint: the fraction of that joint's labeled
instances that are correct; overall: the fraction of all labeled joints that are correct.
"""

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from squatpose import joints
from squatpose.angles import LEGS, knee_angles


def pck(pred: np.ndarray, gt: np.ndarray, bboxes: np.ndarray, alpha: float) -> dict[str, float]:
    """PCK of predictions (N, 6, 2) against ground truth (N, 6, 3) with COCO boxes (N, 4).

    Returns {"overall": ..., "<joint name>": ...}; NaN where no joint is labeled.
    """
    gt = np.asarray(gt, np.float64)
    labeled = gt[..., 2] > 0
    dist = np.linalg.norm(np.asarray(pred, np.float64)[..., :2] - gt[..., :2], axis=-1)
    norm = np.asarray(bboxes, np.float64)[:, 2:4].max(axis=1, keepdims=True)
    correct = (dist < alpha * norm) & labeled
    out = {"overall": float(correct.sum() / labeled.sum()) if labeled.any() else float("nan")}
    for j, name in enumerate(joints.NAMES):
        n = labeled[:, j].sum()
        out[name] = float(correct[:, j].sum() / n) if n else float("nan")
    return out


def knee_angle_error(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Mean absolute knee-angle error (degrees) per side, over persons whose hip, knee and ankle
    of that side are labeled; plus the count of such persons."""
    pred_angles, gt_angles = knee_angles(pred), knee_angles(gt)
    out = {}
    for side, idx in LEGS.items():
        ok = (np.asarray(gt)[:, list(idx), 2] > 0).all(axis=1)
        err = np.abs(pred_angles[side][ok] - gt_angles[side][ok])
        err = err[np.isfinite(err)]
        out[f"{side}_mae_deg"] = float(err.mean()) if len(err) else float("nan")
        out[f"{side}_n"] = int(len(err))
    return out


def oks_ap(gt: np.ndarray, bboxes: np.ndarray, areas: np.ndarray, image_ids: np.ndarray,
           pred: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """COCO keypoint AP over the six joints (pycocotools' COCOeval with their OKS sigmas).

    The ground truth is these persons restricted to the six joints (num_keypoints recomputed);
    each person gets one detection: its predicted joints, scored by their mean confidence.
    """
    n = len(gt)
    gt_anns, dets = [], []
    for i in range(n):
        kp = np.asarray(gt[i], np.float64)
        gt_anns.append({
            "id": i + 1, "image_id": int(image_ids[i]), "category_id": 1, "iscrowd": 0,
            "bbox": [float(v) for v in bboxes[i]], "area": float(areas[i]),
            "keypoints": [float(v) for v in kp.ravel()], "num_keypoints": int((kp[:, 2] > 0).sum()),
        })
        det = np.concatenate([np.asarray(pred[i], np.float64)[:, :2], np.asarray(scores[i])[:, None]], 1)
        dets.append({"image_id": int(image_ids[i]), "category_id": 1,
                     "keypoints": [float(v) for v in det.ravel()], "score": float(np.mean(scores[i]))})
    dataset = {
        "images": [{"id": int(i)} for i in np.unique(image_ids)],
        "annotations": gt_anns,
        "categories": [{"id": 1, "name": "person", "keypoints": list(joints.NAMES),
                        "skeleton": [[a + 1, b + 1] for a, b in joints.SKELETON]}],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets) if dets else COCO()
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.array(joints.OKS_SIGMAS)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"ap": float(ev.stats[0]), "ap50": float(ev.stats[1]), "ap75": float(ev.stats[2])}
