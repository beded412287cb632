import numpy as np
import pandas as pd
import pytest

from squatpose import joints
from squatpose.codec import HeatmapCodec, SimCCCodec
from squatpose.coco import person_records
from squatpose.geometry import apply_affine, box_center_size, crop_affine, invert_affine, warp
from squatpose.imaging import read_image
from squatpose.shards import crop_persons
from squatpose.config import CropConfig
from tests.conftest import SAMPLE, ann_path


def test_box_is_enlarged_to_aspect_padded_and_fills_the_crop():
    # A tall 60x160 box at (100, 50): widened to 120x160 (192:256), padded 1.25 -> 150x200.
    center, size = box_center_size(np.array([[100, 50, 60, 160]]), 192 / 256, 1.25)
    np.testing.assert_allclose(center, [[130, 130]])
    np.testing.assert_allclose(size, [[150, 200]])
    m = crop_affine(center, size, 192, 256)
    corners = np.array([[[130, 130], [55, 30], [205, 230]]], np.float64)
    np.testing.assert_allclose(apply_affine(m, corners), [[[96, 128], [0, 0], [192, 256]]], atol=1e-9)
    # A wide box is made taller instead.
    _, size = box_center_size(np.array([[0, 0, 300, 100]]), 0.75, 1.0)
    np.testing.assert_allclose(size, [[300, 400]])


@pytest.fixture(scope="module")
def val_persons() -> pd.DataFrame:
    table, _ = person_records(ann_path(SAMPLE, "val"), SAMPLE / "val2017")
    return table


def test_points_round_trip_image_crop_image(val_persons):
    m, kp_crop = crop_persons(val_persons, CropConfig())
    back = apply_affine(invert_affine(m), kp_crop)
    kp_img = joints.keypoints_from_table(val_persons)
    np.testing.assert_allclose(back, kp_img, atol=1e-3)


def test_crop_pixels_come_from_the_mapped_image_pixels(val_persons):
    """The warped crop at a crop pixel equals the original image at the mapped image point."""
    row = val_persons.iloc[[0]]
    image = read_image(row["image_path"].iloc[0])
    m, _ = crop_persons(row, CropConfig())
    crop = warp(image, m[0], 192, 256)
    inv = invert_affine(m)
    checked = 0
    for cy in range(8, 248, 24):
        for cx in range(8, 184, 24):
            x, y = apply_affine(inv, np.array([[[cx, cy]]], np.float64))[0, 0]
            xi, yi = int(round(x)), int(round(y))
            if 1 <= xi < image.shape[1] - 1 and 1 <= yi < image.shape[0] - 1:
                patch = image[yi - 1:yi + 2, xi - 1:xi + 2].astype(int)
                lo, hi = patch.min(axis=(0, 1)), patch.max(axis=(0, 1))
                assert np.all(crop[cy, cx] >= lo - 1) and np.all(crop[cy, cx] <= hi + 1)
                checked += 1
    assert checked > 50


def test_keypoint_crop_heatmap_decode_back_to_image_within_quantisation(val_persons):
    """keypoint -> crop -> heatmap -> decoded keypoint -> original pixels, on every real person."""
    codec = HeatmapCodec()
    m, kp_crop = crop_persons(val_persons, CropConfig())
    heatmaps, weights = codec.encode(kp_crop)
    decoded, conf = codec.decode(heatmaps, decoding="quarter")
    back = apply_affine(invert_affine(m), decoded)
    kp_img = joints.keypoints_from_table(val_persons)
    scale = m[:, 0, 0]  # crop pixels per image pixel
    used = weights > 0
    assert used.sum() > 150
    err = np.abs(back - kp_img[..., :2])  # image pixels, per axis
    # Quarter-shift decoding is off by at most 1/4 heatmap pixel = stride/4 crop pixels per axis.
    bound = (codec.stride / 4) / scale[:, None, None] + 1e-3
    assert np.all(err[used] <= np.broadcast_to(bound, err.shape)[used])
    # and plain argmax by at most half a heatmap pixel
    decoded_plain, _ = codec.decode(heatmaps, decoding="argmax")
    back_plain = apply_affine(invert_affine(m), decoded_plain)
    err_plain = np.abs(back_plain - kp_img[..., :2])
    assert np.all(err_plain[used] <= 2 * np.broadcast_to(bound, err.shape)[used])
    assert err[used].mean() < err_plain[used].mean()
    assert np.all(conf[used] > 0.85)
    # DARK within the same bound, and on average more than ten times closer
    decoded_dark, _ = codec.decode(heatmaps, decoding="dark")
    err_dark = np.abs(apply_affine(invert_affine(m), decoded_dark) - kp_img[..., :2])
    assert np.all(err_dark[used] <= np.broadcast_to(bound, err.shape)[used])
    assert err_dark[used].mean() < err[used].mean() / 10
    # SimCC (split 2): within half a bin = 1/4 crop pixel per axis
    simcc = SimCCCodec()
    targets, w_simcc = simcc.encode(kp_crop)
    used_simcc = w_simcc > 0
    assert used_simcc.sum() >= used.sum()
    err_simcc = np.abs(apply_affine(invert_affine(m), simcc.decode(targets)[0]) - kp_img[..., :2])
    bound_simcc = (1 / (2 * simcc.split)) / scale[:, None, None] + 1e-3
    assert np.all(err_simcc[used_simcc] <= np.broadcast_to(bound_simcc, err.shape)[used_simcc])
