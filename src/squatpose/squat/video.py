"""Frames in (an image or any video OpenCV reads) and an annotated video out, with clear errors."""

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# FFmpeg's own log lines ("moov atom not found") would come before our one-line error: quiet them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402 (reads the variable above)
import numpy as np  # noqa: E402

from squatpose.errors import SquatposeError
from squatpose.imaging import MAX_PIXELS, read_image


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str  # "image" | "video"
    fps: float  # 0 for an image
    frame_count: int  # as the container says (a video may hold fewer)
    width: int
    height: int
    notes: tuple[str, ...] = field(default=())  # what was assumed, e.g. a frame rate


def open_source(path: str | Path) -> Source:
    """What `path` holds; a `SquatposeError` naming it when it is neither an image nor a video."""
    path = Path(path)
    if not path.is_file():
        raise SquatposeError(f"{path}: input not found")
    if cv2.haveImageReader(str(path)):  # decided from the file's first bytes, not its name
        image = read_image(path)  # an image that does not decode is an ImageError naming the file
        return Source(path, "image", 0.0, 1, image.shape[1], image.shape[0])
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SquatposeError(f"{path}: not an image or a video OpenCV can read")
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > MAX_PIXELS:
            raise SquatposeError(f"{path}: video frames of {width}x{height} pixels are over the "
                                 f"{MAX_PIXELS / 1e6:g}-megapixel limit")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise SquatposeError(f"{path}: video has no frames that can be decoded")
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    notes = ()
    if not (np.isfinite(fps) and 0 < fps < 1000):
        fps, notes = 30.0, ("the video does not say its frame rate: 30 fps assumed (times and speeds scale with it)",)
    return Source(path, "video", fps, max(count, 1), frame.shape[1], frame.shape[0], notes)


def frames(source: Source) -> Iterator[np.ndarray]:
    """The frames, RGB uint8, in order; stops at the first frame that cannot be decoded."""
    if source.kind == "image":
        yield read_image(source.path)
        return
    cap = cv2.VideoCapture(str(source.path))
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


class VideoOut:
    """An MP4 written to a temporary name beside `path` and renamed on `close` (a crash leaves
    any earlier video at `path` as it was)."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}.mp4")
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self.writer.isOpened():
            raise SquatposeError(f"{self.path}: cannot write video (OpenCV has no mp4v encoder here)")

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.writer.release()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.writer.release()
        self.tmp.unlink(missing_ok=True)
