"""Augmentation on real stored crops: image and keypoints move together, targets through the codec."""

import dataclasses

import pytest
import torch

from squatpose import joints
from squatpose.augment import (augment_batch, cut_tops, draw_affines, seeded_generator, transform_keypoints,
                               warp_images)
from squatpose.codec import HeatmapCodec, SimCCCodec, in_crop_keypoints
from squatpose.coco import person_records
from squatpose.config import AugmentConfig, CropConfig
from squatpose.dataset import ShardDataset, crops_to_tensor
from squatpose.shards import write_shards
from tests.conftest import SAMPLE, ann_path

codec = HeatmapCodec()
CODECS = {"heatmap-s4": codec, "heatmap-s2": HeatmapCodec(stride=2), "simcc": SimCCCodec()}
OFF = AugmentConfig(scale=0.0, rotation=0.0, rotation_prob=0.0, flip_prob=0.0, half_body_prob=0.0)


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> dict:
    """16 real val persons of the sample, read from shards as training reads them."""
    table, _ = person_records(ann_path(SAMPLE, "val"), SAMPLE / "val2017")
    out = tmp_path_factory.mktemp("shards") / "val"
    write_shards(table, out, CropConfig(), shard_size=64, workers=1, progress=False)
    ds = ShardDataset(out)
    items = [ds[i] for i in range(16)]
    out = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("image", "kp_crop", "in_crop")}
    out["image"] = crops_to_tensor(out["image"])  # as train_step normalises it before augmenting
    return out


def stored_targets(batch: dict, c) -> tuple[torch.Tensor, torch.Tensor]:
    """The targets of the unaugmented batch, as training makes them from the stored keypoints."""
    return c.encode(in_crop_keypoints(batch["kp_crop"], batch["in_crop"]))


@pytest.mark.parametrize("codec_name", list(CODECS))
def test_nothing_drawn_is_the_identity(batch, codec_name):
    c = CODECS[codec_name]
    image, kp = augment_batch(batch["image"], batch["kp_crop"], batch["in_crop"], OFF, c, seeded_generator(0, 0))
    torch.testing.assert_close(image, batch["image"], atol=1e-4, rtol=0)
    torch.testing.assert_close(kp[..., :2], batch["kp_crop"][..., :2], atol=1e-4, rtol=0)
    torch.testing.assert_close(kp[..., 2], batch["kp_crop"][..., 2] * batch["in_crop"])  # v = 0 off the crop
    target, weight = c.encode(kp)
    expect_target, expect_weight = stored_targets(batch, c)
    torch.testing.assert_close(target, expect_target, atol=1e-4, rtol=0)
    torch.testing.assert_close(weight, expect_weight)
    torch.testing.assert_close(weight, batch["in_crop"])  # these persons' joints in the crop are on the grid
    assert weight.sum() > 50


@pytest.mark.parametrize("codec_name", list(CODECS))
def test_flipped_sample_targets_are_the_mirrored_targets_with_left_and_right_swapped(batch, codec_name):
    """The flip mirrors about the axis the codec's grid is symmetric about, x -> (192 - stride) - x."""
    c = CODECS[codec_name]
    cfg = dataclasses.replace(OFF, flip_prob=1.0)
    image, kp = augment_batch(batch["image"], batch["kp_crop"], batch["in_crop"], cfg, c, seeded_generator(0, 0))
    target, weight = c.encode(kp)
    unflipped, unflipped_weight = stored_targets(batch, c)
    if isinstance(c, SimCCCodec):  # the x bins reversed, the y bins as they were
        vx, vy = c.split_xy(unflipped)
        mirrored = torch.cat([torch.flip(vx, dims=[-1]), vy], -1)[:, list(joints.FLIP_INDEX)]
    else:
        mirrored = torch.flip(unflipped, dims=[-1])[:, list(joints.FLIP_INDEX)]
    torch.testing.assert_close(target, mirrored, atol=1e-4, rtol=0)
    torch.testing.assert_close(weight, unflipped_weight[:, list(joints.FLIP_INDEX)])
    assert weight.sum() > 50  # real joints, not empty targets
    x = batch["image"]
    if c.stride >= 1:  # mirrored about x = (192 - stride) / 2: columns 0..192 - stride reversed
        last = 192 - int(c.stride)
        torch.testing.assert_close(image[..., :last + 1], torch.flip(x[..., :last + 1], dims=[-1]), atol=1e-4, rtol=0)
    else:  # SimCC, split 2: about x = 95.75, so column x shows the mean of columns 191 - x and 192 - x
        torch.testing.assert_close(image[..., 1:], 0.5 * (torch.flip(x[..., 1:], dims=[-1]) + torch.flip(x[..., :-1], dims=[-1])),
                                   atol=1e-4, rtol=0)


def test_rotated_sample_decodes_to_the_rotated_keypoints(batch):
    cfg = dataclasses.replace(OFF, rotation=30.0, rotation_prob=1.0)
    generator = seeded_generator(1, 0)
    affines, flip = draw_affines(batch["kp_crop"], cfg, codec, generator)
    angles = torch.rad2deg(torch.atan2(affines[:, 0, 1], affines[:, 0, 0]))
    assert angles.abs().max() > 20 and not flip.any()  # it did rotate
    kp = transform_keypoints(batch["kp_crop"], affines, flip)
    target, weight = codec.encode(kp)
    decoded, _ = codec.decode(target, decoding="quarter")
    used = weight > 0
    assert used.sum() > 40
    # within the heatmap quantisation: the argmax cell +- a quarter cell, i.e. half a stride
    err = (decoded - kp[..., :2]).abs()[used]
    assert err.max() <= codec.stride / 2 + 1e-4
    # DARK recovers the sub-cell positions (on average far better than the quantisation)
    dark = (codec.decode(target, decoding="dark")[0] - kp[..., :2]).abs()[used]
    assert dark.mean() < 0.1 < 0.4 < err.mean()
    # and SimCC to within half a bin
    simcc = CODECS["simcc"]
    t, w = simcc.encode(kp)
    assert w.sum() > 40
    assert (simcc.decode(t)[0] - kp[..., :2]).abs()[w > 0].max() <= 0.25 + 1e-4
    # and the keypoints really are rotated: distances between joints are kept, positions are not
    d_before = torch.cdist(batch["kp_crop"][..., :2], batch["kp_crop"][..., :2])
    d_after = torch.cdist(kp[..., :2], kp[..., :2])
    torch.testing.assert_close(d_after, d_before, atol=1e-3, rtol=1e-4)
    assert (kp[..., :2] - batch["kp_crop"][..., :2]).abs()[used].mean() > 5


def _dots(kp: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Images (N, 3, h, w) that are black except for a small bright disc at each labeled joint."""
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    img = torch.zeros(len(kp), 3, h, w)
    for n in range(len(kp)):
        for j in range(kp.shape[1]):
            if kp[n, j, 2] > 0:
                d2 = (xs - kp[n, j, 0]) ** 2 + (ys - kp[n, j, 1]) ** 2
                img[n, j % 3] = torch.maximum(img[n, j % 3], torch.exp(-d2 / 8))
    return img


@pytest.mark.parametrize("cfg", [
    AugmentConfig(),  # everything at once: scale, rotation, flip, half-body
    dataclasses.replace(OFF, half_body_prob=1.0),
    dataclasses.replace(OFF, scale=0.35, rotation=40.0, rotation_prob=1.0, flip_prob=1.0),
    dataclasses.replace(OFF, scale=0.25, half_body_prob=0.3, shift=0.05),  # the calibration's reframing
])
def test_image_and_keypoints_move_together(batch, cfg):
    """Paint each joint into an image, augment image and keypoints: the paint lands on the joint."""
    kp = batch["kp_crop"].clone()
    inside = (kp[..., 0] > 4) & (kp[..., 0] < 187) & (kp[..., 1] > 4) & (kp[..., 1] < 251) & (kp[..., 2] > 0)
    kp[..., 2] = inside.float()
    kp = kp[:, :3]  # one joint per colour channel: hips and left knee
    img = _dots(kp, 256, 192)
    affines, flip = draw_affines(batch["kp_crop"], cfg, codec, seeded_generator(2, 0))
    out = warp_images(img, affines)
    moved = transform_keypoints(batch["kp_crop"], affines, torch.zeros_like(flip))[:, :3]  # no L/R swap here
    # the painted peak sits at the pixel nearest the joint (<= 0.5 px off), which the zoom magnifies
    tolerance = 0.5 * torch.linalg.det(affines[:, :, :2]).abs().sqrt() + 0.75
    checked = 0
    for n in range(len(kp)):
        for j in range(3):
            x, y = moved[n, j, :2]
            if kp[n, j, 2] == 0 or not (3 < x < 188 and 3 < y < 252):
                continue
            peak = divmod(int(out[n, j].argmax()), 192)
            assert max(abs(peak[0] - y), abs(peak[1] - x)) <= tolerance[n], (n, j, peak, (float(x), float(y)))
            checked += 1
    assert checked >= 20


def test_half_body_zooms_onto_the_legs(batch):
    cfg = dataclasses.replace(OFF, half_body_prob=1.0)
    affines, _ = draw_affines(batch["kp_crop"], cfg, codec, seeded_generator(0, 0))
    zoom = torch.linalg.det(affines[:, :, :2]).sqrt()
    labeled = (batch["kp_crop"][..., 2] > 0).sum(1)
    assert (zoom[labeled >= 2] >= 1).all() and (zoom[labeled >= 2] > 1.2).any()
    assert (zoom[labeled < 2] == 1).all()
    kp = transform_keypoints(batch["kp_crop"], affines, torch.zeros(len(zoom), dtype=torch.bool))
    legs = kp[labeled >= 2]
    before = batch["kp_crop"][labeled >= 2]
    vis = (before[..., 2] > 0) & (before[..., 0] >= 0) & (before[..., 0] < 192) & (before[..., 1] >= 0) \
        & (before[..., 1] < 256)  # the joints the box is drawn around stay in view
    assert ((legs[..., 0] >= 0) & (legs[..., 0] < 192) & (legs[..., 1] >= 0) & (legs[..., 1] < 256))[vis].all()


def test_top_cut_blackens_above_a_row_between_hips_and_mid_thigh_and_keeps_the_hip_labels(batch):
    """A camera frame cutting the thighs: every row above the cut is black, every row below as before;
    the cut lies between 0.2 thigh lengths above the hips and 0.6 below them; the keypoints (and so
    the hips' targets) are unchanged."""
    black = crops_to_tensor(torch.zeros(1, 1, 1, 3, dtype=torch.uint8))[0, :, 0, 0]
    cfg = dataclasses.replace(OFF, top_cut_prob=1.0)
    kp = in_crop_keypoints(batch["kp_crop"], batch["in_crop"])
    hip_y = kp[:, :2, 1].where(kp[:, :2, 2] > 0, torch.nan).nanmean(1)
    knee_y = kp[:, 2:4, 1].where(kp[:, 2:4, 2] > 0, torch.nan).nanmean(1)
    upright = knee_y > hip_y  # False where a side is missing (NaN)
    assert upright.sum() >= 8 and (~upright).sum() >= 1
    cuts = []
    for seed in range(5):
        image, moved = augment_batch(batch["image"], batch["kp_crop"], batch["in_crop"], cfg, codec,
                                     seeded_generator(seed, 0))
        torch.testing.assert_close(moved, kp)
        row_black = (image - black.view(1, 3, 1, 1)).abs().amax(dim=(1, 3)) < 1e-6  # (N, H)
        changed = (image - batch["image"]).abs().amax(dim=(1, 3)) > 1e-3  # the identity warp is within 1e-4
        for n in range(len(image)):
            if not upright[n]:
                assert not changed[n].any()  # no cut without labeled hips and knees
                continue
            rows = changed[n].nonzero()
            cut = int(rows[-1]) + 1 if len(rows) else 0  # the first row left as it was
            assert row_black[n, :cut].all()  # what changed is black, and nothing below it changed
            t = (cut - hip_y[n]) / (knee_y[n] - hip_y[n])
            assert -0.2 - 1 / (knee_y[n] - hip_y[n]) <= t <= 0.6 + 1 / (knee_y[n] - hip_y[n])
            cuts.append(float(t))
    assert min(cuts) < 0 < max(cuts)  # the cut falls both above and below the hips
    same = cut_tops(batch["image"], kp, 0.0, seeded_generator(0, 0))
    torch.testing.assert_close(same, batch["image"])


def test_a_joint_the_stored_crop_did_not_show_stays_unsupervised(batch):
    """Zooming out can bring a labeled joint that lay outside the stored crop into view, onto black
    padding: it must not become a target there."""
    kp, in_crop = batch["kp_crop"][:4].clone(), batch["in_crop"][:4].clone()
    kp[:, 0] = torch.tensor([-20.0, 128.0, 2.0])  # left hip labeled, 20 px left of the crop
    in_crop[:, 0] = 0  # as the shards store it
    assert codec.encode(kp)[1][:, 0].eq(0).all()
    cfg = dataclasses.replace(OFF, scale=0.35)
    for c in CODECS.values():
        supervised = 0
        for seed in range(40):
            _, moved = augment_batch(batch["image"][:4], kp, in_crop, cfg, c, seeded_generator(seed, 0))
            w = c.encode(moved)[1]
            supervised += int(w[:, 0].sum())
            assert w[:, 1:].sum() > 0  # the other joints still are
        assert supervised == 0
    # while the same draws do bring it onto the heatmap grid (what the mask is for)
    on_grid = 0
    for seed in range(40):
        moved = transform_keypoints(kp, *draw_affines(kp, cfg, codec, seeded_generator(seed, 0)))
        on_grid += int(codec.encode(moved)[1][:, 0].sum())
    assert on_grid > 10


def test_draws_are_seeded_per_epoch_and_rank(batch):
    a1, _ = draw_affines(batch["kp_crop"], AugmentConfig(), codec, seeded_generator(0, 3))
    a2, _ = draw_affines(batch["kp_crop"], AugmentConfig(), codec, seeded_generator(0, 3))
    a3, _ = draw_affines(batch["kp_crop"], AugmentConfig(), codec, seeded_generator(0, 4))
    a4, _ = draw_affines(batch["kp_crop"], AugmentConfig(), codec, seeded_generator(0, 3, rank=1))
    torch.testing.assert_close(a1, a2)
    assert not torch.allclose(a1, a3) and not torch.allclose(a1, a4)


def test_shift_moves_the_box_and_leaves_the_other_draws_as_they_were(batch):
    cfg = dataclasses.replace(OFF, scale=0.25, half_body_prob=0.3)
    plain, _ = draw_affines(batch["kp_crop"], cfg, codec, seeded_generator(1, 0))
    shifted, _ = draw_affines(batch["kp_crop"], dataclasses.replace(cfg, shift=0.1), codec, seeded_generator(1, 0))
    torch.testing.assert_close(shifted[:, :, :2], plain[:, :, :2])  # the same scales and zooms
    offset = (shifted[:, :, 2] - plain[:, :, 2]) / torch.tensor([192.0, 256.0], dtype=torch.float64)
    assert len(offset) >= 8 and 0.04 < float(offset.std()) < 0.2  # about the 0.1 asked for
