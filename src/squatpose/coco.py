"""Load and validate COCO keypoint annotation files into one table of person records.

A person record is one row per non-crowd person annotation with at least one of the six
lower-body joints labeled: ids, image path and size, bbox, and (x, y, v) of each joint.
Problems a user can cause are either a stop (`AnnotationError`: the file is not COCO
keypoints) or a counted skip with a one-line warning naming the file and annotation id.
"""

import contextlib
import io
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pycocotools.coco import COCO

from squatpose import joints
from squatpose.errors import AnnotationError
from squatpose.imaging import MAX_PIXELS

log = logging.getLogger(__name__)

IMAGES_MANIFEST = "images.json"  # in raw data whose images live elsewhere: {split: folder}
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")

# Why a person can be skipped, as counted in metrics/subsets.json.
SKIP_REASONS = ("zero_size_bbox", "missing_image", "unreadable_image")


@dataclass
class LoadReport:
    """What loading a file kept, skipped and corrected."""

    persons: int = 0
    crowd_ignored: int = 0
    skipped: Counter = field(default_factory=lambda: Counter({r: 0 for r in SKIP_REASONS}))
    joints_outside_image: int = 0

    def as_dict(self) -> dict:
        return {
            "persons": self.persons,
            "crowd_ignored": self.crowd_ignored,
            "skipped": dict(self.skipped),
            "joints_outside_image_dropped": self.joints_outside_image,
        }


def _require(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise AnnotationError(f"{path}: not COCO keypoints: {what}")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    """A finite int or float (JSON's NaN and Infinity are not numbers here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _inside(file_name: str) -> bool:
    """A relative path that stays inside the image folder (no absolute path, no `..`)."""
    p = Path(file_name)
    return bool(file_name) and not p.is_absolute() and ".." not in p.parts and not file_name.startswith("\\")


MAX_COORD = 1e6  # pixels: a bbox or keypoint number beyond this is corrupt, not a real image


def _is_number_list(x: object, n: int) -> bool:
    """A list of `n` finite numbers within +-MAX_COORD."""
    return isinstance(x, list) and len(x) == n and all(_is_number(v) and abs(v) <= MAX_COORD for v in x)


def _without_masks(obj: dict) -> dict:
    """JSON object hook: drop an annotation's `segmentation` as soon as it is parsed. Nothing here
    uses masks, and full COCO's polygons would take most of the ~2 GB that its parsed train file holds."""
    obj.pop("segmentation", None)
    return obj


def load_coco(path: str | Path) -> tuple[COCO, tuple[int, ...]]:
    """Read a COCO keypoint file, check its schema, and index it with pycocotools.

    Returns the index and where each of the six joints sits in the file's keypoint list. That
    list is found by name, so a dataset labeled with its own skeleton (CVAT, Label Studio) works
    as long as it names the six joints as COCO does (`left_hip` ... `right_ankle`); COCO's own
    17 keypoints put them at 11..16.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_bytes(), object_hook=_without_masks)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found") from None
    except OSError as e:  # a folder, no permission, ...
        raise AnnotationError(f"{path}: cannot read the annotation file ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: not valid JSON ({e})") from None
    _require(isinstance(data, dict), path, "top level is not an object")
    for key in ("images", "annotations", "categories"):
        _require(isinstance(data.get(key), list), path, f"missing list '{key}'")
    persons = [c for c in data["categories"] if isinstance(c, dict) and c.get("name") == "person"]
    _require(len(persons) == 1, path, "no single category named 'person'")
    names = persons[0].get("keypoints")
    _require(isinstance(names, list) and all(isinstance(n, str) for n in names), path,
             "categories: 'person' has no list of keypoint names ('keypoints')")
    missing = [n for n in joints.NAMES if n not in names]
    _require(not missing, path, f"categories: 'person' keypoints lack {', '.join(missing)} "
                                f"(needs {', '.join(joints.NAMES)})")
    index = tuple(names.index(n) for n in joints.NAMES)
    person_id = persons[0].get("id")
    for img in data["images"]:
        ok = (isinstance(img, dict) and _is_int(img.get("id")) and isinstance(img.get("file_name"), str)
              and _is_number(img.get("width")) and _is_number(img.get("height")))
        _require(ok, path, f"image {img.get('id') if isinstance(img, dict) else img!r} needs an "
                           "integer id, a file_name string and numeric width and height")
        where = f"image {img['id']}"
        _require(img["width"] >= 1 and img["height"] >= 1 and img["width"] * img["height"] <= MAX_PIXELS, path,
                 f"{where}: size {img['width']}x{img['height']} is not between 1x1 and {MAX_PIXELS / 1e6:g} megapixels")
        _require(_inside(img["file_name"]), path,
                 f"{where}: file_name {img['file_name']!r} leaves the image folder (absolute or '..')")
    image_ids = [img["id"] for img in data["images"]]
    _require(len(set(image_ids)) == len(image_ids), path, "image ids are not unique")
    image_ids = set(image_ids)
    ann_ids = set()
    for ann in data["annotations"]:
        _require(isinstance(ann, dict) and _is_int(ann.get("id")), path, "an annotation has no integer 'id'")
        where = f"annotation {ann['id']}"
        _require(ann["id"] not in ann_ids, path, f"{where}: id used twice")
        ann_ids.add(ann["id"])
        _require(_is_int(ann.get("category_id")), path, f"{where}: no integer category_id")
        _require(ann.get("image_id") in image_ids, path, f"{where}: image_id not in 'images'")
        _require(_is_number_list(ann.get("bbox"), 4), path, f"{where}: bbox is not 4 finite numbers within +-1e6")
        ann.setdefault("iscrowd", 0)
        if ann["category_id"] == person_id:
            _require(_is_number_list(ann.get("keypoints"), 3 * len(names)), path,
                     f"{where}: keypoints is not {len(names)} x (x, y, v) finite numbers within +-1e6")
            if "area" in ann:
                _require(_is_number(ann["area"]) and 0 <= ann["area"] <= MAX_COORD ** 2, path,
                         f"{where}: area is not a finite number between 0 and 1e12")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco, index


def annotation_file(dataset_dir: str | Path, split: str) -> Path:
    """`<dataset_dir>/annotations/person_keypoints_<split>.json`: COCO's name for a split's keypoints."""
    return Path(dataset_dir) / "annotations" / f"person_keypoints_{split}.json"


def raw_annotations(raw_dir: str | Path, split: str) -> Path:
    """The keypoint file of a split ("train", "val") of the raw data, named as COCO 2017 names it."""
    return annotation_file(raw_dir, f"{split}2017")


def images_dir(raw_dir: str | Path, split: str) -> Path:
    """The image folder of a split of the raw data: `<split>2017/`, or, for a user's own dataset
    (`data.source: coco_dir`), the folder that `images.json` names."""
    manifest = Path(raw_dir) / IMAGES_MANIFEST
    if manifest.is_file():
        return Path(json.loads(manifest.read_text())[split])
    return Path(raw_dir) / f"{split}2017"


def _image_readable(path: Path) -> str | None:
    """None when `path` looks like a JPEG or PNG, else the skip reason."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except (FileNotFoundError, IsADirectoryError):
        return "missing_image"
    except OSError:
        return "unreadable_image"
    return None if head.startswith(IMAGE_MAGIC) else "unreadable_image"


def person_records(ann_path: str | Path, images_dir: str | Path) -> tuple[pd.DataFrame, LoadReport]:
    """One row per usable, non-crowd person with >= 1 lower-body joint labeled.

    Skips (counted, warned): zero-size bbox, missing image, image that is not a JPEG/PNG.
    A labeled joint outside the image is dropped (v set to 0), counted and warned.
    """
    ann_path, images_dir = Path(ann_path), Path(images_dir)
    coco, index = load_coco(ann_path)
    report = LoadReport()
    cat_ids = coco.getCatIds(catNms=["person"])
    ann_ids = coco.getAnnIds(catIds=cat_ids, iscrowd=None)
    rows, image_status = [], {}
    cols = np.array([[3 * j, 3 * j + 1, 3 * j + 2] for j in index])
    for ann in coco.loadAnns(ann_ids):
        if ann["iscrowd"]:
            report.crowd_ignored += 1
            continue
        kp = np.asarray(ann["keypoints"], np.float32)[cols]  # (6, 3)
        if not (kp[:, 2] > 0).any():
            continue
        img = coco.imgs[ann["image_id"]]
        x, y, w, h = (float(v) for v in ann["bbox"])
        if w <= 0 or h <= 0:
            log.warning("%s: annotation %s: bbox has zero size, skipped", ann_path, ann["id"])
            report.skipped["zero_size_bbox"] += 1
            continue
        image_path = images_dir / img["file_name"]
        if img["id"] not in image_status:
            image_status[img["id"]] = _image_readable(image_path)
        if image_status[img["id"]]:
            reason = image_status[img["id"]]
            log.warning("%s: annotation %s: %s %s, skipped", ann_path, ann["id"],
                        reason.replace("_", " "), image_path)
            report.skipped[reason] += 1
            continue
        outside = (kp[:, 2] > 0) & (
            (kp[:, 0] < 0) | (kp[:, 1] < 0) | (kp[:, 0] > img["width"]) | (kp[:, 1] > img["height"])
        )
        if outside.any():
            names = ", ".join(joints.NAMES[j] for j in np.flatnonzero(outside))
            log.warning("%s: annotation %s: %s outside the %sx%s image, dropped",
                        ann_path, ann["id"], names, img["width"], img["height"])
            report.joints_outside_image += int(outside.sum())
            kp[outside] = 0
            if not (kp[:, 2] > 0).any():
                continue
        area = float(ann.get("area", w * h))  # COCO's segment area; OKS scales by it
        rows.append((ann["id"], img["id"], str(image_path), img["width"], img["height"],
                     x, y, w, h, area, kp))
    report.persons = len(rows)
    table = _to_table(rows)
    return table, report


def _to_table(rows: list[tuple]) -> pd.DataFrame:
    """The person table, sorted by (image_id, ann_id), keypoints as flat columns."""
    meta = ["ann_id", "image_id", "image_path", "width", "height",
            "bbox_x", "bbox_y", "bbox_w", "bbox_h", "area"]
    table = pd.DataFrame([r[:-1] for r in rows], columns=meta)
    table = table.astype({"ann_id": "int64", "image_id": "int64", "image_path": "string",
                          "width": "int32", "height": "int32", "bbox_x": "float32",
                          "bbox_y": "float32", "bbox_w": "float32", "bbox_h": "float32",
                          "area": "float32"})
    kp = np.stack([r[-1] for r in rows]) if rows else np.zeros((0, joints.NUM_JOINTS, 3), np.float32)
    for name, values in joints.keypoints_to_columns(kp).items():
        table[name] = values
    return table.sort_values(["image_id", "ann_id"], kind="stable").reset_index(drop=True)


def bboxes_from_table(table: pd.DataFrame) -> np.ndarray:
    """The (N, 4) float32 array of COCO boxes (x, y, w, h)."""
    return table[["bbox_x", "bbox_y", "bbox_w", "bbox_h"]].to_numpy(np.float32)
