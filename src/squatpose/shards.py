"""Precomputed person crops and their keypoints in fixed-size shards (dataset.py reads them).

Targets are not stored: the codec makes them from the keypoints as batches are drawn (codec.py),
so one shard set serves every codec, and augmentation encodes the transformed keypoints the same way.

A shard set is a folder:
    index.json              written last: shards, sample count, skips, settings
    shard-00000/            one folder per shard, renamed into place only when complete
        images.npy          (n, H, W, 3) uint8 RGB crops
        in_crop.npy         (n, 6) float32: 1 where the joint is labeled and inside the crop
        kp_crop.npy         (n, 6, 3) float32 keypoints (x, y, v) in crop pixels
        crop_to_image.npy   (n, 2, 3) float64 affine: crop pixels -> original image pixels
        ann_ids.npy         (n,) int64 COCO annotation ids
        image_ids.npy       (n,) int64 COCO image ids
        keypoints.npy       (n, 6, 3) float32 ground truth (x, y, v) in original image pixels
        bboxes.npy          (n, 4) float32 COCO person boxes (x, y, w, h)
        areas.npy           (n,) float64 COCO segment areas (the OKS scale)
        meta.json           fingerprint of the inputs and settings, skipped persons
Evaluation reads everything it scores against from the shards, not from the subset tables.
This module does not import torch: the `shards` stage and its workers stay small (~100 MB each).
Shard k holds persons [k * shard_size, (k + 1) * shard_size) of the table, so an interrupted
run finds its finished shards by fingerprint and builds only the rest.
"""

import functools
import hashlib
import json
import logging
import multiprocessing as mp
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from squatpose import joints
from squatpose.atomic import atomic_path, write_json
from squatpose.coco import bboxes_from_table
from squatpose.config import CropConfig
from squatpose.errors import ImageError
from squatpose.fingerprint import code_hash
from squatpose.geometry import apply_affine, crop_person, invert_affine, warp
from squatpose.imaging import read_image

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 2: no stored heatmaps, in_crop; 3: ground truth in image pixels, boxes, areas, image ids
ARRAYS = ("images", "in_crop", "kp_crop", "crop_to_image", "ann_ids", "image_ids", "keypoints", "bboxes", "areas")


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def crop_persons(table: pd.DataFrame, crop: CropConfig) -> tuple[np.ndarray, np.ndarray]:
    """Image -> crop matrices (N, 2, 3) and keypoints (N, 6, 3) in crop pixels for a person table."""
    m = crop_person(bboxes_from_table(table), crop)
    kp_crop = apply_affine(m, joints.keypoints_from_table(table))
    return m, kp_crop.astype(np.float32)


@functools.cache
def shard_code() -> str:
    """Hash of the source of every module that shapes a shard: edit one, and shards rebuild."""
    return code_hash(__name__)


def fingerprint(rows: pd.DataFrame, crop: CropConfig) -> str:
    """Hash of a shard's inputs (annotations, image paths), settings and code: equal means reusable."""
    h = hashlib.sha1()
    h.update(json.dumps([FORMAT_VERSION, shard_code(), asdict(crop)]).encode())
    h.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _build_shard(task: tuple) -> tuple[str, int, list[dict]]:
    """Crop, encode and write one shard; returns (name, samples written, skipped persons)."""
    out_dir, name, rows, crop = task
    m, kp_crop = crop_persons(rows, crop)
    images, keep, skipped, cache = [], [], [], {}
    for i, (path, ann_id) in enumerate(zip(rows["image_path"], rows["ann_id"])):
        try:
            if path not in cache:  # persons of one image are adjacent: decode it once
                cache = {path: read_image(path)}
            images.append(warp(cache[path], m[i], crop.width, crop.height))
            keep.append(i)
        except ImageError as e:
            log.warning("annotation %s: %s, skipped", ann_id, e)
            skipped.append({"ann_id": int(ann_id), "reason": str(e)})
    keep = np.asarray(keep, np.int64)
    kp = kp_crop[keep]
    inside = (kp[..., 0] >= 0) & (kp[..., 0] <= crop.width - 1) & (kp[..., 1] >= 0) & (kp[..., 1] <= crop.height - 1)
    arrays = {
        "images": np.stack(images) if images else np.zeros((0, crop.height, crop.width, 3), np.uint8),
        "in_crop": ((kp[..., 2] > 0) & inside).astype(np.float32),
        "kp_crop": kp_crop[keep],
        "crop_to_image": invert_affine(m[keep]),
        "ann_ids": rows["ann_id"].to_numpy(np.int64)[keep],
        "image_ids": rows["image_id"].to_numpy(np.int64)[keep],
        "keypoints": joints.keypoints_from_table(rows)[keep],
        "bboxes": bboxes_from_table(rows)[keep],
        "areas": rows["area"].to_numpy(np.float64)[keep],
    }
    final = Path(out_dir) / name
    with atomic_path(final) as tmp:
        tmp.mkdir()
        for key, value in arrays.items():
            np.save(tmp / f"{key}.npy", value)
        # the pixels too: images replaced under the same names give other contents, so training
        # (whose resume key includes this) does not mistake the new shards for the old
        content = hashlib.sha1()
        for key in ARRAYS:
            content.update(np.ascontiguousarray(arrays[key]).tobytes())
        meta = {"fingerprint": fingerprint(rows, crop), "content": content.hexdigest(),
                "samples": len(keep), "skipped": skipped}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return name, len(keep), skipped


def _one_thread() -> None:
    """Pool workers: one thread each, so that `workers` processes share the cores evenly."""
    cv2.setNumThreads(1)


def _shard_done(path: Path, fp: str) -> bool:
    """A finished shard of these inputs; one with skipped persons is retried (the image may be fixed)."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return (meta.get("fingerprint") == fp and "content" in meta and not meta.get("skipped")
            and all((path / f"{a}.npy").is_file() for a in ARRAYS))


def write_shards(table: pd.DataFrame, out_dir: str | Path, crop: CropConfig, shard_size: int = 512, workers: int = 2, progress: bool = True) -> dict:
    """Write the shard set of a person table; finished shards that still match are kept.

    Returns the index (also written to `out_dir/index.json`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index_path = out_dir / "index.json"
    plan = []
    for k, start in enumerate(range(0, len(table), shard_size)):
        rows = table.iloc[start:start + shard_size].reset_index(drop=True)
        plan.append((shard_name(k), rows, fingerprint(rows, crop)))
    wanted = {name for name, _, _ in plan}
    for stale in out_dir.iterdir():  # shards of an older plan, temporaries of a crashed write
        ours = stale.name.startswith(("shard-", ".shard-"))
        if ours and stale.name not in wanted:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    todo = [(out_dir, name, rows, crop) for name, rows, fp in plan
            if not _shard_done(out_dir / name, fp)]
    if todo and index_path.exists():
        index_path.unlink()  # the set is incomplete until every shard is written
    done = len(table) - sum(len(t[2]) for t in todo)
    bar = tqdm(total=len(table), initial=done, unit="person", desc=f"shards {out_dir}",
               disable=not progress)
    persons = {t[1]: len(t[2]) for t in todo}
    if workers > 1 and len(todo) > 1:
        # A worker that dies (out of memory, say) raises BrokenProcessPool here instead of hanging.
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                 initializer=_one_thread) as pool:
            for future in as_completed([pool.submit(_build_shard, t) for t in todo]):
                bar.update(persons[future.result()[0]])
    else:
        for task in todo:
            _build_shard(task)
            bar.update(persons[task[1]])
    bar.close()
    shards, skipped = [], []
    for name, _, _ in plan:
        meta = json.loads((out_dir / name / "meta.json").read_text())
        shards.append({"name": name, "samples": meta["samples"], "fingerprint": meta["fingerprint"],
                       "content": meta["content"]})
        skipped.extend(meta["skipped"])
    index = {
        "format_version": FORMAT_VERSION,
        "samples": sum(s["samples"] for s in shards),
        "persons": len(table),
        "skipped": skipped,
        "crop": asdict(crop),
        "shards": shards,
    }
    write_json(index_path, index)
    return index
