"""The person box in every frame: given (`--box`) or detected on the first frame, then following
the joints; a COCO-pretrained torchvision detector finds the person again after it was lost."""

import hashlib
from pathlib import Path

import numpy as np

from squatpose.errors import SquatposeError

DETECTOR = "fasterrcnn_mobilenet_v3_large_fpn"  # torchvision's lightest COCO person detector with FPN
# torchvision's file name carries the first 8 hex digits of the file's SHA-256: checked before loading
DETECTOR_URL = "https://download.pytorch.org/models/fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
MIN_INSIDE = 0.5  # a given box must have at least this fraction of its area inside the frame


def parse_box(text: str) -> np.ndarray:
    """"x,y,w,h" (pixels, top-left corner and size) -> float array; a one-line error otherwise."""
    try:
        box = np.array([float(v) for v in text.split(",")])
    except ValueError:
        box = np.zeros(0)
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
        raise SquatposeError(f"--box {text!r}: expected x,y,w,h with a positive width and height")
    return box


def check_box(box: np.ndarray, width: int, height: int, where: str) -> None:
    """Refuse a box that lies mostly outside a `width` x `height` frame."""
    x, y, w, h = box
    inside = max(0.0, min(x + w, width) - max(x, 0.0)) * max(0.0, min(y + h, height) - max(y, 0.0))
    if inside < MIN_INSIDE * w * h:
        raise SquatposeError(f"{where}: box {','.join(f'{v:g}' for v in box)} lies outside the "
                             f"{width}x{height} frame ({100 * inside / (w * h):.0f}% inside)")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - w * h
    return float(w * h / union) if union > 0 else 0.0


class BoxFollower:
    """Moves a fixed-size box sideways with the person: each joint seen now votes for where the
    box centre is, from its offset to the centre when the box was set; the median vote, smoothed,
    becomes the next frame's centre. Only x follows: a squat moves the hips and knees down while
    the feet stay put, so the standing person's box still holds the squatting one, and a box that
    followed the joints down would drift off the person. Joints not seen leave the box where it is."""

    def __init__(self, box: np.ndarray, width: int, height: int, smoothing: float = 0.5):
        self.size = np.asarray(box[2:], np.float64)
        self.center = np.asarray(box[:2], np.float64) + self.size / 2
        self.frame = np.array([width, height], np.float64)
        self.smoothing = smoothing
        self.offsets: np.ndarray | None = None  # (6, 2) joint - centre, once seen

    @property
    def box(self) -> np.ndarray:
        return np.concatenate([self.center - self.size / 2, self.size])

    def reset(self, box: np.ndarray) -> None:
        self.__init__(box, *self.frame, smoothing=self.smoothing)

    def update(self, kp: np.ndarray, seen: np.ndarray) -> None:
        """Follow joints `kp` (6, 2) image pixels, of which `seen` (6,) are confident."""
        if self.offsets is None:
            self.offsets = np.full((len(kp), 2), np.nan)
        known = seen & ~np.isnan(self.offsets).any(-1)
        if known.any():
            target = np.median(kp[known, 0] - self.offsets[known, 0])
            x = self.smoothing * self.center[0] + (1 - self.smoothing) * target
            self.center[0] = np.clip(x, 0, self.frame[0])
        new = seen & np.isnan(self.offsets).any(-1)
        self.offsets[new] = kp[new] - self.center


class PersonDetector:
    """torchvision's COCO-pretrained person detector, from torch's cache (downloaded once)."""

    def __init__(self, min_score: float = 0.5):
        import torch
        import torchvision
        from torchvision.models import detection

        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(DETECTOR_URL).name
        expected = torch.hub.HASH_REGEX.search(cached.name).group(1)
        if cached.is_file():  # placed by hand, or an earlier download: the right file?
            digest = hashlib.sha256(cached.read_bytes()).hexdigest()
            if not digest.startswith(expected):
                raise SquatposeError(f"{cached}: SHA-256 {digest[:8]}... is not that of the {DETECTOR} weights "
                                     f"({expected}...); replace it with {DETECTOR_URL}")
        try:  # a download is checked against the same hash; either way only tensors are unpickled
            state = torch.hub.load_state_dict_from_url(DETECTOR_URL, progress=False, map_location="cpu",
                                                       check_hash=True, weights_only=True)
        except Exception as e:  # URLError, timeouts, a cut-off download
            raise SquatposeError(
                f"person detector weights not available ({type(e).__name__}): put {DETECTOR_URL} at "
                f"{cached} (or set TORCH_HOME), or give the person box with --box x,y,w,h") from None
        self.model = detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
        try:
            self.model.load_state_dict(state)
        except RuntimeError as e:
            raise SquatposeError(f"{cached}: not the {DETECTOR} weights ({str(e).splitlines()[0][:160]})") from None
        self.model.eval()
        self.min_score = min_score
        self._torch, self._tv = torch, torchvision

    def detect(self, frame: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
        """The person box (x, y, w, h) in an RGB frame: the most confident one, or the one
        overlapping `near` most; None when no person scores `min_score`."""
        torch = self._torch
        with torch.inference_mode():
            out = self.model([torch.from_numpy(frame).permute(2, 0, 1).float() / 255])[0]
        keep = (out["labels"] == 1) & (out["scores"] >= self.min_score)  # COCO label 1: person
        boxes = out["boxes"][keep]
        if not len(boxes):
            return None
        i = 0
        if near is not None:
            ref = torch.tensor([[near[0], near[1], near[0] + near[2], near[1] + near[3]]], dtype=boxes.dtype)
            i = int(self._tv.ops.box_iou(boxes, ref)[:, 0].argmax())
        x1, y1, x2, y2 = boxes[i].tolist()
        return np.array([x1, y1, x2 - x1, y2 - y1])
