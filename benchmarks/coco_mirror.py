"""A COCO-2017-shaped mirror built from the embedded sample, and a local HTTP server for it.

    python benchmarks/coco_mirror.py --persons 121020 --out /var/tmp/mirror [--serve]

The mirror holds the official archives under the official paths (`annotations/annotations_trainval2017.zip`
with `annotations/person_keypoints_{train,val}2017.json`, `zips/{train,val}2017.zip` with
`{train,val}2017/<12-digit id>.jpg`) and the official JSON schema (info, licenses, images,
annotations with segmentation, keypoints, num_keypoints, area, iscrowd, bbox; categories). Every
image is a 640x480 mosaic of four real sample images of the same split, each scaled into one
quadrant, with a seeded brightness/contrast jitter and JPEG quality; every annotation of those
images comes along, transformed: persons with and without keypoints, crowd regions (their RLE
masks scaled). Mosaics are added until the split has `persons` person records (non-crowd, a
lower-body joint labeled: what the `subsets` stage keeps). Image zips are stored (JPEGs do not
deflate), the annotation zip deflated, as COCO's are.

`serve(root)` answers GET with HTTP Range from a folder, counts the bytes it sent and can be
slowed down (`rate`), so that a download can be interrupted midway on purpose.
"""

import argparse
import json
import multiprocessing as mp
import os
import threading
import time
import zipfile
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from squatpose import joints

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
COCO_VAL_PER_TRAIN = 5_067 / 121_020  # COCO 2017's persons with a lower-body joint, val / train
CANVAS_W, CANVAS_H = 640, 480
ARCHIVES = {"train": "zips/train2017.zip", "val": "zips/val2017.zip",
            "annotations": "annotations/annotations_trainval2017.zip"}


@cache
def lower_body() -> tuple[int, ...]:
    """Where squatpose's six joints sit in the sample's keypoint list (found by name, as coco.load_coco does)."""
    names = source("train")[0]["categories"][0]["keypoints"]
    return tuple(names.index(n) for n in joints.NAMES)


def is_record(ann: dict) -> bool:
    """A person the subsets stage keeps: not crowd, a box of positive size, a lower-body joint labeled."""
    return (not ann["iscrowd"] and ann["bbox"][2] > 0 and ann["bbox"][3] > 0
            and any(ann["keypoints"][3 * j + 2] > 0 for j in lower_body()))


@cache
def source(split: str) -> tuple[dict, list[dict], dict[int, list[dict]]]:
    """The sample's annotation file of `split`, its images, and their annotations by image id."""
    data = json.loads((SAMPLE / "annotations" / f"person_keypoints_{split}2017.json").read_text())
    by_image: dict[int, list[dict]] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    return data, data["images"], by_image


@cache
def tile(split: str, k: int) -> tuple[np.ndarray, float, float]:
    """Source image k of `split` scaled to fit one quadrant, with its x and y scale."""
    img = source(split)[1][k]
    pixels = cv2.imread(str(SAMPLE / f"{split}2017" / img["file_name"]), cv2.IMREAD_COLOR)
    h, w = pixels.shape[:2]
    s = min(CANVAS_W / 2 / w, CANVAS_H / 2 / h)
    tw, th = max(1, round(w * s)), max(1, round(h * s))
    return cv2.resize(pixels, (tw, th), interpolation=cv2.INTER_AREA), tw / w, th / h


OFFSETS = ((0, 0), (CANVAS_W // 2, 0), (0, CANVAS_H // 2), (CANVAS_W // 2, CANVAS_H // 2))


def mosaic_jpeg(task: tuple[str, tuple[int, ...], int]) -> bytes:
    """The JPEG of one mosaic: four source images of `split`, jittered by a seeded draw."""
    split, picks, seed = task
    rng = np.random.default_rng(seed)
    canvas = np.zeros((CANVAS_H, CANVAS_W, 3), np.uint8)
    for k, (ox, oy) in zip(picks, OFFSETS):
        pixels = tile(split, k)[0]
        canvas[oy:oy + pixels.shape[0], ox:ox + pixels.shape[1]] = pixels
    jittered = cv2.convertScaleAbs(canvas, alpha=rng.uniform(0.9, 1.1), beta=rng.uniform(-10, 10))
    ok, jpeg = cv2.imencode(".jpg", jittered, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 96))])
    assert ok
    return jpeg.tobytes()


def _rle_mask(rle: dict) -> np.ndarray:
    """The binary mask of COCO's uncompressed RLE (what crowd regions carry in the keypoint files)."""
    h, w = rle["size"]
    flat = np.repeat(np.arange(len(rle["counts"])) % 2, rle["counts"]).astype(np.uint8)
    return flat.reshape((h, w), order="F")


def _rle_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE of a binary mask: run lengths in column-major order, zeros first."""
    flat = mask.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]]))
    return ([0] if flat[0] else []) + runs.tolist()


def _moved(ann: dict, img: dict, sx: float, sy: float, ox: int, oy: int, new_id: int, image_id: int) -> dict:
    """An annotation of source image `img` placed into a mosaic quadrant."""
    x, y, w, h = ann["bbox"]
    kp = list(ann["keypoints"])
    for j in range(0, len(kp), 3):
        if kp[j + 2] > 0:
            kp[j], kp[j + 1] = round(kp[j] * sx + ox, 2), round(kp[j + 1] * sy + oy, 2)
    if ann["iscrowd"]:
        small = cv2.resize(_rle_mask(ann["segmentation"]), tile_size(img, sx, sy), interpolation=cv2.INTER_NEAREST)
        full = np.zeros((CANVAS_H, CANVAS_W), np.uint8)
        full[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
        segmentation = {"counts": _rle_counts(full), "size": [CANVAS_H, CANVAS_W]}
    else:
        segmentation = [[round(v * (sx if i % 2 == 0 else sy) + (ox if i % 2 == 0 else oy), 2)
                         for i, v in enumerate(poly)] for poly in ann["segmentation"]]
    return {"segmentation": segmentation, "num_keypoints": ann["num_keypoints"],
            "area": round(ann["area"] * sx * sy, 2), "iscrowd": ann["iscrowd"], "keypoints": kp,
            "image_id": image_id, "bbox": [round(x * sx + ox, 2), round(y * sy + oy, 2),
                                           round(w * sx, 2), round(h * sy, 2)],
            "category_id": ann["category_id"], "id": new_id}


def tile_size(img: dict, sx: float, sy: float) -> tuple[int, int]:
    return max(1, round(img["width"] * sx)), max(1, round(img["height"] * sy))


@dataclass
class Split:
    """One split of the mirror: its JSON and what it counts."""

    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)
    persons: int = 0
    image_bytes: int = 0


def build_split(split: str, persons: int, zip_path: Path, seed: int, workers: int, progress: bool) -> Split:
    """Mosaics of `split` into `zip_path` until they hold `persons` person records."""
    _, sources, by_image = source(split)
    records = np.array([sum(map(is_record, by_image[img["id"]])) for img in sources])
    rng = np.random.default_rng(seed)
    plan, total = [], 0
    while total < persons:
        picks = tuple(int(k) for k in rng.choice(len(sources), 4, replace=False))
        plan.append(picks)
        total += int(records[list(picks)].sum())
    out = Split()
    first_id = {"train": 1, "val": 900_000_000}[split]  # ids that never collide between splits
    tasks = [(split, picks, seed * 1_000_003 + n) for n, picks in enumerate(plan)]
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as z, mp.get_context("fork").Pool(workers) as pool, \
            tqdm(total=len(plan), unit="image", desc=f"mirror {split}2017", disable=not progress) as bar:
        for n, jpeg in enumerate(pool.imap(mosaic_jpeg, tasks, chunksize=64)):
            image_id = first_id + n
            name = f"{image_id:012d}.jpg"
            z.writestr(f"{split}2017/{name}", jpeg)
            out.image_bytes += len(jpeg)
            out.images.append({"license": 1, "file_name": name, "coco_url": f"http://images.cocodataset.org/{split}2017/{name}",
                               "height": CANVAS_H, "width": CANVAS_W, "date_captured": "2013-11-14 17:02:52",
                               "flickr_url": "", "id": image_id})
            for k, (ox, oy) in zip(plan[n], OFFSETS):
                img = sources[k]
                _, sx, sy = tile(split, k)
                for ann in by_image[img["id"]]:
                    moved = _moved(ann, img, sx, sy, ox, oy, len(out.annotations) + first_id, image_id)
                    out.annotations.append(moved)
                    out.persons += is_record(moved)
            bar.update()
    return out


def build_mirror(out: Path, persons: int, val_persons: int | None = None, seed: int = 0, workers: int = 2,
                 progress: bool = True) -> dict:
    """Write the three archives under `out` (official paths); returns what they hold."""
    val_persons = round(persons * COCO_VAL_PER_TRAIN) if val_persons is None else val_persons
    for path in ARCHIVES.values():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
    summary, files = {}, {}
    for split, n in (("train", persons), ("val", val_persons)):
        s = build_split(split, n, out / ARCHIVES[split], seed + (split == "val"), workers, progress)
        data = source(split)[0]
        files[f"annotations/person_keypoints_{split}2017.json"] = json.dumps(
            {"info": data["info"], "licenses": data["licenses"], "images": s.images,
             "annotations": s.annotations, "categories": data["categories"]}, separators=(",", ":"))
        summary[split] = {"persons": s.persons, "images": len(s.images), "annotations": len(s.annotations),
                          "crowd": sum(a["iscrowd"] for a in s.annotations),
                          "no_keypoints": sum(a["num_keypoints"] == 0 for a in s.annotations),
                          "image_bytes": s.image_bytes,
                          "json_bytes": len(files[f"annotations/person_keypoints_{split}2017.json"])}
    with zipfile.ZipFile(out / ARCHIVES["annotations"], "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    summary["archive_bytes"] = {name: (out / path).stat().st_size for name, path in ARCHIVES.items()}
    return summary


class Mirror:
    """A threaded HTTP server for the files under `root` on 127.0.0.1, with Range support.

    `sent` counts the body bytes sent, `ranges` records each request's path and Range header,
    `rate` (bytes/s, 0: unlimited) slows the responses down."""

    def __init__(self, root: Path):
        self.root, self.sent, self.ranges, self.rate = Path(root), 0, [], 0
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = (mirror.root / self.path.lstrip("/")).resolve()
                rng = self.headers.get("Range")
                mirror.ranges.append((self.path, rng))
                if mirror.root.resolve() not in path.parents or not path.is_file():
                    self.send_error(404, "Not Found")
                    return
                size = path.stat().st_size
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= size:
                    self.send_response(416, "Range Not Satisfiable")
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.send_header("Content-Length", str(size - start))
                self.end_headers()
                with open(path, "rb") as f:
                    f.seek(start)
                    while chunk := f.read(1 << 20):
                        try:
                            self.wfile.write(chunk)
                        except (BrokenPipeError, ConnectionResetError):
                            return  # the client went away (killed on purpose)
                        mirror.sent += len(chunk)
                        if mirror.rate:
                            time.sleep(len(chunk) / mirror.rate)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "Mirror":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=121_020, help="train persons with a lower-body joint")
    parser.add_argument("--val-persons", type=int, help="val persons (default: COCO's val/train ratio)")
    parser.add_argument("--out", required=True, help="folder for the archives")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--serve", action="store_true", help="then serve it until Ctrl-C")
    args = parser.parse_args()
    summary = build_mirror(Path(args.out), args.persons, args.val_persons, workers=args.workers)
    print(json.dumps(summary, indent=2))
    if args.serve:
        with Mirror(Path(args.out)) as m:
            print(f"serving {args.out} at {m.url} (params.yaml: download.base_url); Ctrl-C stops")
            try:
                m.thread.join()
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
