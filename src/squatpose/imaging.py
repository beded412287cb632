"""Reading images with clear errors, and the normalisation of model input (dataset.crops_to_tensor applies it)."""

import io
from pathlib import Path

import cv2
import numpy as np

from squatpose.errors import ImageError

# ImageNet statistics, RGB: torchvision's pretrained backbones expect them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# The largest image decoded (width x height): 50 megapixels (8660 x 5773, 150 MB as RGB). A file
# whose header claims more is refused before decoding, however small the file.
MAX_PIXELS = 50_000_000


def check_pixels(data: bytes, path: str | Path) -> None:
    """`ImageError` if the image file's header (read without decoding) claims over `MAX_PIXELS`."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
        except Image.DecompressionBombError:  # over PIL's own limit, far over ours
            raise ImageError(f"{path}: image header claims over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, "
                             f"over the {MAX_PIXELS / 1e6:g}-megapixel limit") from None
        except Exception:  # not an image PIL knows: OpenCV decides
            return
    if width * height > MAX_PIXELS:
        raise ImageError(f"{path}: image of {width}x{height} pixels is over the "
                         f"{MAX_PIXELS / 1e6:g}-megapixel limit")


def read_image(path: str | Path) -> np.ndarray:
    """The image at `path` as (H, W, 3) uint8 RGB; `ImageError` naming the file otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: image not found") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read image ({e.strerror})") from None
    # OpenCV decodes a cut-off JPEG without an error, filling the rest with grey: refuse it.
    if data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-1024:]:
        raise ImageError(f"{path}: cannot decode image (truncated JPEG: no end marker)")
    check_pixels(data, path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{path}: cannot decode image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
