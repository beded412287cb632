"""Crop geometry: person box -> affine transform -> crop, and points forward and back.

One affine matrix per person maps original image pixels to crop pixels:
the box centre goes to the crop centre, and the box, enlarged to the crop's aspect ratio
and padded, fills the crop. Its inverse maps predictions back to the original image.
"""

import cv2
import numpy as np


def box_center_size(bboxes: np.ndarray, aspect: float, padding: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre (N, 2) and size (N, 2) of COCO boxes (x, y, w, h) enlarged to `aspect` = w/h and padded."""
    b = np.asarray(bboxes, np.float64).reshape(-1, 4)
    center = b[:, :2] + b[:, 2:] / 2
    w, h = b[:, 2].copy(), b[:, 3].copy()
    wide = w > aspect * h
    h[wide] = w[wide] / aspect
    w[~wide] = h[~wide] * aspect
    return center, np.stack([w, h], axis=1) * padding


def crop_affine(center: np.ndarray, size: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """(N, 2, 3) matrices mapping image points to crop points: the region of `size` (w, h)
    around `center` fills an `out_w` x `out_h` crop, its centre at the crop's centre."""
    center = np.asarray(center, np.float64).reshape(-1, 2)
    size = np.asarray(size, np.float64).reshape(-1, 2)
    scale = out_w / size[:, 0]  # equals out_h / size[:, 1] when the aspect matches
    m = np.zeros((len(center), 2, 3))
    m[:, 0, 0] = m[:, 1, 1] = scale
    m[:, :, 2] = np.array([out_w / 2, out_h / 2]) - scale[:, None] * center
    return m


def crop_person(bboxes: np.ndarray, crop) -> np.ndarray:
    """(N, 2, 3) image -> crop matrices of person boxes (x, y, w, h) under a CropConfig: the box,
    enlarged to the crop's aspect ratio and padded by `crop.padding`, fills the crop."""
    center, size = box_center_size(bboxes, crop.width / crop.height, crop.padding)
    return crop_affine(center, size, crop.width, crop.height)


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of (N, 2, 3) affine matrices."""
    m = np.asarray(m, np.float64)
    a_inv = np.linalg.inv(m[..., :2])
    return np.concatenate([a_inv, -a_inv @ m[..., 2:]], axis=-1)


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (N, K, 2) with matrices (N, 2, 3); extra trailing columns (v) pass through."""
    points = np.asarray(points)
    xy = np.einsum("nij,nkj->nki", m[..., :2], points[..., :2].astype(np.float64)) + m[:, None, :, 2]
    out = points.astype(np.float64, copy=True)
    out[..., :2] = xy
    return out


def warp(image: np.ndarray, m: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """The crop of `image` under one (2, 3) matrix, bilinear, black outside the image."""
    return cv2.warpAffine(image, np.asarray(m, np.float64).reshape(2, 3), (out_w, out_h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
