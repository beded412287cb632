"""Experiments outside the DVC pipeline, on real held-out data: LSP Extended (LSPET) images
1-7000 train, 7001-8000 validate, optionally with the embedded COCO sample's training persons,
through the pipeline's own steps (import-lsp, subsets, shards; then train_row and evaluate_row).
Used by benchmarks/learn_lspet.py (the learning benchmark) and scripts/train_shipped_model.py
(the model shipped in the package).
"""

import copy
import json
import os
from pathlib import Path

import pandas as pd
import yaml

from squatpose.atomic import write_json
from squatpose.coco import annotation_file, raw_annotations
from squatpose.config import Params, params_from_dict
from squatpose.download import provide_coco_dir
from squatpose.lsp import import_lsp
from squatpose.shards import write_shards
from squatpose.subsets import subset_path, write_subsets

REPO = Path(__file__).resolve().parents[2]
LSPET = REPO.parent / "shared" / "data" / "lspet"
COCO_SAMPLE = REPO / "data" / "sample"
COCO_ID_OFFSET = 10_000_000  # COCO sample image and annotation ids, moved clear of LSPET's 1..10000


def runs_dir() -> Path:
    """Where long runs keep their files, outside any checkout: $SQUATPOSE_RUNS, else
    ~/.cache/squatpose/runs."""
    root = os.environ.get("SQUATPOSE_RUNS")
    return Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "squatpose" / "runs"


def add_coco_sample(coco_dir: Path, lspet_images: Path, sample_dir: Path = COCO_SAMPLE) -> Path:
    """Merge the COCO sample's training persons into `coco_dir`'s train file; returns the image folder
    both are read from (`coco_dir/images`, links `lspet` and `coco` to the two folders)."""
    images = coco_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name, target in (("lspet", lspet_images), ("coco", sample_dir / "train2017")):
        link = images / name
        if not link.is_symlink():
            link.symlink_to(Path(target).resolve(), target_is_directory=True)
    lsp = {s: json.loads(annotation_file(coco_dir, s).read_text()) for s in ("train", "val")}
    coco = json.loads(raw_annotations(sample_dir, "train").read_text())
    for data in lsp.values():
        for img in data["images"]:
            img["file_name"] = f"lspet/{img['file_name']}"
    for img in coco["images"]:
        img.update(id=img["id"] + COCO_ID_OFFSET, file_name=f"coco/{img['file_name']}")
    for a in coco["annotations"]:
        a.update(id=a["id"] + COCO_ID_OFFSET, image_id=a["image_id"] + COCO_ID_OFFSET)
    lsp["train"]["images"] += coco["images"]
    lsp["train"]["annotations"] += coco["annotations"]
    for split, data in lsp.items():
        write_json(annotation_file(coco_dir, split), data)
    return images


def prepare(out: Path, lspet: Path = LSPET, limit: int | None = None, with_coco_sample: bool = False) -> Path:
    """LSPET (+ COCO sample) -> COCO files -> subset tables under `out` (each step skipped when
    done); returns the image folder the annotation files are relative to."""
    coco_dir, raw_dir, subsets_dir = out / "coco", out / "raw", out / "subsets"
    last = 7000 if limit is None else min(limit, 7000)
    splits = {"train": range(1, last + 1), "val": range(7001, 7001 + (1000 if limit is None else max(limit // 4, 50)))}
    images = Path(lspet, "images").resolve()
    done = coco_dir / "annotations" / ".complete"
    if not done.is_file():
        print(json.dumps(import_lsp(Path(lspet, "joints.mat"), images, coco_dir, splits)))
        if with_coco_sample:
            add_coco_sample(coco_dir, images)
        done.write_text("")
    if with_coco_sample:
        images = coco_dir / "images"
    if not (subsets_dir / "val-full.parquet").is_file():
        data = run_params(out, images, 96, 128, {}).data
        provide_coco_dir(data, raw_dir)
        print(json.dumps(write_subsets(raw_dir, subsets_dir, out / "subsets.json", run_params(out, images, 96, 128, {}).subsets)))
    return images


def shards_for(out: Path, params: Params) -> Path:
    """The train and val shard sets of `out`'s subsets at `params.crop` (built once per crop size)."""
    shards = out / f"shards-{params.crop.width}x{params.crop.height}"
    for split in ("train", "val"):
        table = pd.read_parquet(subset_path(out / "subsets", split, "full"))
        write_shards(table, shards / split, params.crop, params.shards.shard_size, params.shards.workers)
    return shards


def run_params(out: Path, images: Path, width: int, height: int, rows: dict, codec: dict | None = None,
               models: dict | None = None, experiment: str = "lspet-benchmark",
               augment: dict | None = None) -> Params:
    """The repository's params.yaml with `out`'s data, crop size `width` x `height`, `codec`
    overrides, per-architecture settings `models` (name -> overrides, added to every architecture
    that has no entry in params.yaml), `augment` overrides and `rows`; MLflow runs go to `out`/mlflow.db."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(source="coco_dir", train_images=str(images), val_images=str(images),
                       train_annotations=str(annotation_file(out / "coco", "train")),
                       val_annotations=str(annotation_file(out / "coco", "val")))
    raw["crop"].update(width=width, height=height)
    raw["codec"].update(codec or {})
    raw["augment"].update(augment or {})
    template = next(iter(raw["models"].values()))
    for row in rows.values():
        raw["models"].setdefault(row["model"], copy.deepcopy(template))
    for name in raw["models"]:
        raw["models"][name].update(pretrained=False, **(models or {}))
    raw["rows"] = rows
    raw["model"] = next(iter(rows.values()))["model"] if rows else raw["model"]
    if not rows:
        raw["rows"] = {"probe": {"model": raw["model"], "subset": "full"}}
    raw["mlflow"].update(experiment=experiment, tracking_uri=f"sqlite:///{out.resolve()}/mlflow.db")
    return params_from_dict(raw, "experiment params")
