"""Leeds Sports Pose (LSP, LSP Extended) annotations -> COCO keypoint files.

`joints.mat` holds 14 joints per image: LSP Extended as `joints` (14, 3, N), the original LSP
as (3, 14, N); the third value is a flag. Joint order: 0 R ankle, 1 R knee, 2 R hip, 3 L hip,
4 L knee, 5 L ankle, 6 R wrist, 7 R elbow, 8 R shoulder, 9 L shoulder, 10 L elbow, 11 L wrist,
12 neck, 13 head top. The conversion:
- joints go to their COCO keypoint (`LSP_TO_COCO`); neck and head top have none and are dropped;
- LSP Extended annotates only visible joints (flag 1): those become v = 2, the others v = 0
  (unlabeled, x = y = 0). The original LSP places every joint, its flag marking occlusion
  (1 = occluded): occluded joints become v = 1, the others v = 2;
- the bbox is the extent of all labeled joints (neck and head top included), grown by
  `BOX_MARGIN` of its width and height on each side (joints are centres, a person's outline is
  wider) and clipped to the image; area = w * h. Persons with fewer than 2 labeled joints, and
  images that are missing or unreadable, are left out and counted. Splits may not overlap.
"""

import logging
import re
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from squatpose import joints
from squatpose.atomic import write_json
from squatpose.coco import annotation_file
from squatpose.errors import AnnotationError

log = logging.getLogger(__name__)

# LSP's 14 joints in LSP's order.
LSP_JOINTS = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
              "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top")
# LSP joint index -> COCO keypoint index, by name (neck and head top have none).
LSP_TO_COCO = {k: joints.COCO_KEYPOINTS.index(name) for k, name in enumerate(LSP_JOINTS)
               if name in joints.COCO_KEYPOINTS}
BOX_MARGIN = 0.1


def read_lsp_joints(mat_path: str | Path) -> tuple[np.ndarray, str]:
    """(N, 14, 3) joints (x, y, COCO v) and the layout name ('lspet' or 'lsp') of a joints.mat."""
    mat_path = Path(mat_path)
    try:
        mat = scipy.io.loadmat(mat_path)
    except FileNotFoundError:
        raise AnnotationError(f"{mat_path}: not found") from None
    except Exception as e:  # scipy raises ValueError/TypeError/... for a file that is not a .mat
        raise AnnotationError(f"{mat_path}: not a MATLAB .mat file ({e})") from None
    j = mat.get("joints")
    if not isinstance(j, np.ndarray) or j.ndim != 3:
        raise AnnotationError(f"{mat_path}: no 3-D array 'joints' (expected 14 x 3 x N or 3 x 14 x N)")
    if j.shape[:2] == (14, 3):
        layout, j = "lspet", np.transpose(j, (2, 0, 1)).astype(np.float64)
        v = np.where(j[..., 2] > 0, 2, 0)
    elif j.shape[:2] == (3, 14):
        layout, j = "lsp", np.transpose(j, (2, 1, 0)).astype(np.float64)
        v = np.where(j[..., 2] > 0, 1, 2)
    else:
        raise AnnotationError(f"{mat_path}: 'joints' is {'x'.join(map(str, j.shape))}, "
                              "expected 14 x 3 x N (LSP Extended) or 3 x 14 x N (LSP)")
    bad = np.argwhere(~np.isfinite(j))
    if len(bad):
        n, joint, _ = bad[0]
        raise AnnotationError(f"{mat_path}: joint {joint + 1} of image {n + 1} is not a finite number "
                              f"({len(bad)} non-finite values in 'joints')")
    out = j.copy()
    out[..., 2] = v
    out[v == 0, :2] = 0
    return out, layout


def image_path(images_dir: Path, number: int) -> Path | None:
    """im00001.jpg (LSP Extended) or im0001.jpg (LSP) for a 1-based image number."""
    for name in (f"im{number:05d}.jpg", f"im{number:04d}.jpg"):
        if (images_dir / name).is_file():
            return images_dir / name
    return None


def lsp_box(kp: np.ndarray, width: int, height: int) -> list[float] | None:
    """COCO bbox (x, y, w, h) from the labeled joints of one person, or None if fewer than 2."""
    xy = kp[kp[:, 2] > 0, :2]
    if len(xy) < 2:
        return None
    lo, hi = xy.min(0), xy.max(0)
    margin = BOX_MARGIN * (hi - lo)
    lo = np.maximum(lo - margin, 0)
    hi = np.minimum(hi + margin, [width, height])
    if (hi <= lo).any():
        return None
    return [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]


def to_coco(lsp: np.ndarray, images_dir: str | Path, numbers: range) -> tuple[dict, dict]:
    """A COCO keypoint dataset of images `numbers` (1-based) and counts of what was left out."""
    images_dir = Path(images_dir)
    images, annotations = [], []
    skipped = {"missing_image": 0, "unreadable_image": 0, "too_few_joints": 0}
    for n in numbers:
        path = image_path(images_dir, n)
        if path is None:
            skipped["missing_image"] += 1
            continue
        try:
            with Image.open(path) as im:  # reads the header only
                width, height = im.size
        except OSError as e:  # PIL.UnidentifiedImageError included
            log.warning("%s: not a readable image (%s), left out", path, e)
            skipped["unreadable_image"] += 1
            continue
        kp = lsp[n - 1]
        box = lsp_box(kp, width, height)
        if box is None:
            skipped["too_few_joints"] += 1
            continue
        coco_kp = np.zeros((len(joints.COCO_KEYPOINTS), 3))
        for src, dst in LSP_TO_COCO.items():
            coco_kp[dst] = kp[src]
        images.append({"id": n, "file_name": path.name, "width": width, "height": height})
        annotations.append({
            "id": n, "image_id": n, "category_id": 1, "iscrowd": 0, "bbox": box, "area": box[2] * box[3],
            "num_keypoints": int((coco_kp[:, 2] > 0).sum()),
            "keypoints": [round(float(v), 2) for v in coco_kp.reshape(-1)],
        })
    if skipped["missing_image"]:
        log.warning("%s: %d of %d images not found, left out", images_dir, skipped["missing_image"], len(numbers))
    categories = [{"id": 1, "name": "person", "supercategory": "person",
                   "keypoints": list(joints.COCO_KEYPOINTS), "skeleton": []}]
    return {"images": images, "annotations": annotations, "categories": categories}, skipped


def parse_splits(texts: list[str]) -> dict[str, range]:
    """['train=1-7000', 'val=7001-8000'] -> {'train': range(1, 7001), 'val': range(7001, 8001)}."""
    splits = {}
    for text in texts:
        name, numbers = parse_split(text)
        if name in splits:
            raise AnnotationError(f"--split {name} given twice")
        splits[name] = numbers
    return splits


def parse_split(text: str) -> tuple[str, range]:
    """'train=1-7000' -> ('train', range(1, 7001))."""
    m = re.fullmatch(r"([A-Za-z0-9_-]+)=(\d+)-(\d+)", text.strip())
    if not m or int(m[2]) < 1 or int(m[3]) < int(m[2]):
        raise AnnotationError(f"--split {text!r}: expected NAME=FIRST-LAST with 1 <= FIRST <= LAST, "
                              "e.g. train=1-7000")
    return m[1], range(int(m[2]), int(m[3]) + 1)


def import_lsp(mat_path: str | Path, images_dir: str | Path, out_dir: str | Path,
               splits: dict[str, range] | None = None) -> dict[str, dict]:
    """Write `<out_dir>/annotations/person_keypoints_<split>.json` for each split; returns counts.

    Default split: `all`, every image number with a row in joints.mat.
    """
    lsp, layout = read_lsp_joints(mat_path)
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise AnnotationError(f"{images_dir}: image folder not found")
    splits = splits or {"all": range(1, len(lsp) + 1)}
    seen: set[int] = set()
    for name, numbers in splits.items():
        if numbers.stop - 1 > len(lsp):
            raise AnnotationError(f"{mat_path}: split {name} asks for image {numbers.stop - 1}, "
                                  f"but joints has {len(lsp)} rows")
        if seen & set(numbers):
            raise AnnotationError(f"split {name} overlaps another split (image {min(seen & set(numbers))})")
        seen |= set(numbers)
    counts = {}
    for name, numbers in splits.items():
        data, skipped = to_coco(lsp, images_dir, numbers)
        path = annotation_file(out_dir, name)
        write_json(path, data)
        counts[name] = {"path": str(path), "layout": layout, "persons": len(data["annotations"]), **skipped}
    return counts
