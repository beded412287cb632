import dataclasses

import numpy as np
import pytest
import torch

from squatpose.codec import HeatmapCodec, SimCCCodec, codec_from_meta, in_crop_keypoints, make_codec
from squatpose.config import CodecConfig, CropConfig
from squatpose.joints import FLIP_INDEX

codec = HeatmapCodec()  # 192x256 crop, stride 4: 48x64 heatmaps, sigma 2, DARK decoding
codec2 = HeatmapCodec(stride=2)  # 96x128 heatmaps
simcc = SimCCCodec()  # split 2: 384 x bins, 512 y bins, sigma 2 bins


def random_keypoints(rng, n: int, x_range=(0, 191), y_range=(0, 255), joints: int = 6) -> np.ndarray:
    """(n, joints, 3) labeled keypoints drawn uniformly in crop pixels."""
    return np.concatenate([rng.uniform(*x_range, (n, joints, 1)), rng.uniform(*y_range, (n, joints, 1)),
                           np.full((n, joints, 1), 2.0)], -1).astype(np.float32)


def mirror(kp: np.ndarray) -> np.ndarray:
    """The keypoints of the horizontally mirrored crop (x -> 191 - x, left and right swapped)."""
    out = kp.copy()
    out[..., 0] = 191 - kp[..., 0]
    return out[:, list(FLIP_INDEX)]


def test_encode_puts_a_unit_gaussian_at_position_over_stride():
    kp = np.array([[[40.0, 80.0, 2], [0, 0, 0], [100.0, 30.0, 1]]], np.float32)
    hm, w = codec.encode(kp)
    assert hm.shape == (1, 3, 64, 48) and hm.dtype == np.float32 and codec.output_shape == (64, 48)
    np.testing.assert_array_equal(w, [[1, 0, 1]])
    assert hm[0, 0, 20, 10] == pytest.approx(1.0)
    assert hm[0, 0, 20, 11] == pytest.approx(np.exp(-1 / 8))
    assert hm[0, 0, 22, 10] == pytest.approx(np.exp(-4 / 8))
    assert np.unravel_index(hm[0, 2].argmax(), (64, 48)) == (7, 25)
    assert hm[0, 1].max() == 0  # unlabeled: all zero
    assert hm.min() >= 0 and hm.max() <= 1


def test_subpixel_position_and_joints_off_the_grid():
    # A joint is trained when its nearest heatmap cell is on the grid: x/4 in [-0.5, 47.5).
    kp = np.array([[[41.0, 80.0, 2], [-10.0, 50.0, 2], [50.0, 300.0, 2], [189.9, 253.9, 2],
                    [190.0, 100.0, 2], [-1.9, 100.0, 2], [-2.1, 100.0, 2]]], np.float32)
    hm, w = codec.encode(kp)
    np.testing.assert_array_equal(w, [[1, 0, 0, 1, 0, 1, 0]])
    assert hm[0, 0, 20, 10] == pytest.approx(np.exp(-0.25**2 / 8))  # centred at x = 10.25
    assert hm[0, 0, 20, 10] < 1 and hm[0, 0, 20, 10] > hm[0, 0, 20, 11]
    assert hm[0, 1].max() == 0 and hm[0, 2].max() == 0


def test_decode_argmax_quarter_shift_and_confidence():
    kp = np.array([[[41.2, 80.0, 2], [38.8, 80.0, 2], [40.0, 82.0, 2]]], np.float32)
    hm, _ = codec.encode(kp)
    hm[0, 2] *= 0.5
    xy, conf = codec.decode(hm, decoding="quarter")
    np.testing.assert_allclose(xy[0], [[41.0, 80.0], [39.0, 80.0], [40.0, 81.0]])
    np.testing.assert_allclose(conf[0, 2], 0.5 * np.exp(-0.25 / 8), rtol=1e-5)
    xy_plain, conf_plain = codec.decode(hm, decoding="argmax")
    np.testing.assert_allclose(xy_plain[0], [[40.0, 80.0], [40.0, 80.0], [40.0, 80.0]])
    np.testing.assert_array_equal(conf_plain, conf)  # the confidence is the peak whatever the refinement
    assert codec.decoding == "quarter"  # the default, what the learning benchmark measured best
    np.testing.assert_array_equal(codec.decode(hm)[0], xy)
    # DARK finds the exact sub-cell positions, even of a scaled heatmap
    xy_dark, conf_dark = codec.decode(hm, decoding="dark")
    np.testing.assert_allclose(xy_dark[0], kp[0, :, :2], atol=0.02)
    np.testing.assert_array_equal(conf_dark, conf)
    with pytest.raises(ValueError, match="unknown decoding"):
        codec.decode(hm, decoding="median")


def test_dark_decoding_recovers_sub_cell_positions_far_better_than_quarter():
    """Encoded Gaussians at random interior positions (at least 5 heatmap cells from the border,
    where the blur is undistorted): DARK is off by ~0.001 crop px; quarter by ~0.5 (uniform in
    +-1 = a quarter cell); plain argmax by ~1 (+-2 = half a cell)."""
    kp = random_keypoints(np.random.default_rng(0), 100, (20, 188 - 20), (20, 252 - 20))
    hm, w = codec.encode(kp)
    assert w.min() == 1
    err = {d: np.abs(codec.decode(hm, decoding=d)[0] - kp[..., :2]) for d in ("argmax", "quarter", "dark")}
    assert err["dark"].mean() < 0.02 and err["dark"].max() < 0.1
    assert 0.4 < err["quarter"].mean() < 0.6 and err["quarter"].max() <= 1.0 + 1e-3
    assert 0.8 < err["argmax"].mean() < 1.2 and err["argmax"].max() <= 2.0 + 1e-3
    # the same at stride 2, where a cell is 2 crop pixels
    kp2 = random_keypoints(np.random.default_rng(1), 100, (10, 190 - 10), (10, 254 - 10))
    hm2, _ = codec2.encode(kp2)
    err2 = {d: np.abs(codec2.decode(hm2, decoding=d)[0] - kp2[..., :2]) for d in ("quarter", "dark")}
    assert err2["dark"].mean() < 0.01 and err2["dark"].max() < 0.05
    assert 0.2 < err2["quarter"].mean() < 0.3


def test_dark_falls_back_to_quarter_next_to_the_border():
    """Within three cells of the border DARK's blur is distorted: the quarter step is used there."""
    kp = np.array([[[1.0, 100.0, 2], [5.3, 120.0, 2], [186.7, 90.0, 2], [100.0, 2.2, 2], [90.0, 253.0, 2],
                    [61.9, 58.6, 2]]], np.float32)
    hm, _ = codec.encode(kp)
    dark, quarter = codec.decode(hm, decoding="dark")[0], codec.decode(hm, decoding="quarter")[0]
    np.testing.assert_array_equal(dark[0, :5], quarter[0, :5])
    assert abs(dark[0, 5] - kp[0, 5, :2]).max() < 0.01 and abs(quarter[0, 5] - kp[0, 5, :2]).max() > 0.5


def test_stride_two_shapes_positions_and_grid():
    kp = np.array([[[40.0, 80.0, 2], [41.0, 80.0, 2], [0, 0, 0], [-0.9, 100.0, 2], [-1.1, 100.0, 2],
                    [190.9, 254.9, 2], [191.0, 100.0, 2], [50.0, 255.0, 2]]], np.float32)
    hm, w = codec2.encode(kp)
    assert hm.shape == (1, 8, 128, 96) and codec2.output_shape == (128, 96)
    assert (codec2.heatmap_w, codec2.heatmap_h) == (96, 128)
    # x/2 in [-0.5, 95.5), y/2 in [-0.5, 127.5)
    np.testing.assert_array_equal(w, [[1, 1, 0, 1, 0, 1, 0, 0]])
    assert hm[0, 0, 40, 20] == pytest.approx(1.0)
    assert hm[0, 0, 40, 21] == pytest.approx(np.exp(-1 / 8))  # sigma 2 cells = 4 crop pixels
    assert hm[0, 1, 40, 20] == pytest.approx(np.exp(-0.25 / 8))  # centred at cell 20.5
    assert hm[0, 2].max() == 0 and hm[0, 4].max() == 0 and hm[0, 6].max() == 0
    xy, conf = codec2.decode(hm[:, :2], decoding="argmax")
    np.testing.assert_allclose(xy[0], [[40.0, 80.0], [40.0, 80.0]])  # argmax cell x 2 (a tie picks the first)
    xy, _ = codec2.decode(hm[:, :2], decoding="quarter")
    np.testing.assert_allclose(xy[0], [[40.0, 80.0], [40.5, 80.0]])  # a quarter cell = half a pixel
    xy, _ = codec2.decode(hm[:, :2], decoding="dark")
    np.testing.assert_allclose(xy[0], kp[0, :2, :2], atol=0.01)
    np.testing.assert_allclose(conf[0], [1.0, np.exp(-0.25 / 8)], rtol=1e-5)


def test_make_codec_and_codec_from_meta():
    crop = CropConfig(96, 128)
    hm = make_codec(CodecConfig(stride=2, sigma=1.5, decoding="quarter"), crop)
    assert hm == HeatmapCodec(96, 128, 2, 1.5, "quarter") and hm.output_shape == (64, 48)
    sc = make_codec(CodecConfig(kind="simcc", split=3.0, sigma=4.0), crop)
    assert sc == SimCCCodec(96, 128, 3.0, 4.0) and sc.output_shape == (96 * 3 + 128 * 3,)
    meta = {"crop": dataclasses.asdict(crop), "codec": dataclasses.asdict(CodecConfig(stride=2, decoding="quarter"))}
    assert codec_from_meta(meta) == HeatmapCodec(96, 128, 2, 2.0, "quarter")
    assert codec_from_meta(meta, "dark") == HeatmapCodec(96, 128, 2, 2.0, "dark")
    meta["codec"] = dataclasses.asdict(CodecConfig(kind="simcc", split=1.0))
    assert codec_from_meta(meta, "quarter") == SimCCCodec(96, 128, 1.0, 2.0)


def test_in_crop_keypoints_unlabels_joints_the_crop_did_not_show():
    kp = torch.tensor([[[10.0, 20.0, 2], [-5.0, 20.0, 2], [30.0, 40.0, 1], [0, 0, 0]]])
    in_crop = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    out = in_crop_keypoints(kp, in_crop)
    torch.testing.assert_close(out[..., :2], kp[..., :2])
    torch.testing.assert_close(out[..., 2], torch.tensor([[2.0, 0.0, 1.0, 0.0]]))
    assert kp[0, 1, 2] == 2  # the input is not modified
    _, w = codec.encode(out)
    torch.testing.assert_close(w, torch.tensor([[1.0, 0.0, 1.0, 0.0]]))


@pytest.mark.parametrize("c", [codec, codec2, simcc], ids=["heatmap-s4", "heatmap-s2", "simcc"])
def test_torch_and_numpy_give_the_same_result(c):
    kp = random_keypoints(np.random.default_rng(0), 4, (0, 190), (0, 254))
    kp[0, 0, 2] = 0
    out_np, w_np = c.encode(kp)
    out_t, w_t = c.encode(torch.from_numpy(kp))
    assert isinstance(out_t, torch.Tensor) and isinstance(out_np, np.ndarray)
    assert out_np.shape == (4, 6, *c.output_shape)
    np.testing.assert_array_equal(out_np, out_t.numpy())
    np.testing.assert_array_equal(w_np, w_t.numpy())
    decodings = ("argmax", "quarter", "dark") if isinstance(c, HeatmapCodec) else (None,)
    for d in decodings:
        kp_np, conf_np = c.decode(out_np, decoding=d)
        kp_t, conf_t = c.decode(out_t, decoding=d)
        assert isinstance(kp_np, np.ndarray) and isinstance(kp_t, torch.Tensor)
        np.testing.assert_array_equal(kp_np, kp_t.numpy())
        np.testing.assert_array_equal(conf_np, conf_t.numpy())


@pytest.mark.parametrize("c,decoding", [(codec, "quarter"), (codec, "dark"), (codec2, "quarter"), (codec2, "dark")])
def test_flip_back_maps_the_flipped_crops_heatmaps_onto_the_original_joints(c, decoding):
    """Heatmaps of the mirrored crop (x -> 191 - x, left/right swapped), flipped back, decode to
    the original joints as closely as the original heatmaps do; without the sub-cell shift
    ((crop_w - 1) / stride - (w - 1): 0.75 cells at stride 4, 0.5 at stride 2) they would sit
    3 (stride 4) or 1 (stride 2) crop pixels off."""
    kp = random_keypoints(np.random.default_rng(1), 40, (8, 184), (8, 248))
    mirrored = c.encode(torch.from_numpy(mirror(kp)))[0]
    xy, _ = c.decode(c.flip_back(mirrored), decoding=decoding)
    err = np.abs(xy.numpy() - kp[..., :2]).mean(axis=(0, 1))
    direct = np.abs(c.decode(c.encode(kp)[0], decoding=decoding)[0] - kp[..., :2]).mean(axis=(0, 1))
    assert err[0] < direct[0] + 0.1 and err[1] == pytest.approx(direct[1], abs=1e-6)
    offset_px = ((c.crop_w - 1) / c.stride - (c.heatmap_w - 1)) * c.stride
    assert offset_px == {4: 3.0, 2: 1.0}[c.stride]
    unshifted = torch.flip(mirrored, dims=[-1])[:, list(FLIP_INDEX)]
    assert np.abs(c.decode(unshifted, decoding=decoding)[0].numpy() - kp[..., :2]).mean(axis=(0, 1))[0] > 0.8 * offset_px


def test_heatmap_loss_is_the_weighted_mse():
    kp = torch.from_numpy(random_keypoints(np.random.default_rng(2), 3))
    target, weight = codec.encode(kp)
    assert float(codec.loss(target, target, weight)) == 0
    zeros = float(codec.loss(torch.zeros_like(target), target, weight))
    assert zeros == pytest.approx(float((target**2).mean()), rel=1e-5) and zeros > 0
    np.testing.assert_array_equal(codec.to_heatmaps(target.numpy()), target.numpy())


def test_simcc_encode_puts_1d_gaussians_at_position_times_split():
    kp = np.array([[[40.0, 80.0, 2], [0, 0, 0], [100.25, 30.5, 1]]], np.float32)
    t, w = simcc.encode(kp)
    assert (simcc.bins_x, simcc.bins_y) == (384, 512) and simcc.output_shape == (896,)
    assert t.shape == (1, 3, 896) and t.dtype == np.float32
    np.testing.assert_array_equal(w, [[1, 0, 1]])
    tx, ty = simcc.split_xy(torch.from_numpy(t))
    assert tx.shape == (1, 3, 384) and ty.shape == (1, 3, 512)
    assert tx[0, 0, 80] == pytest.approx(1.0) and ty[0, 0, 160] == pytest.approx(1.0)
    assert tx[0, 0, 81] == pytest.approx(np.exp(-1 / 8)) and ty[0, 0, 164] == pytest.approx(np.exp(-16 / 8))
    assert int(tx[0, 2].argmax()) == 200 and tx[0, 2, 200] == pytest.approx(np.exp(-0.25 / 8))  # 200.5 bins
    assert int(ty[0, 2].argmax()) == 61 and ty[0, 2, 61] == pytest.approx(1.0)
    assert t[0, 1].max() == 0 and t.min() >= 0 and t.max() <= 1
    pictures = simcc.to_heatmaps(t)
    assert pictures.shape == (1, 3, 512, 384)
    assert np.unravel_index(pictures[0, 0].argmax(), (512, 384)) == (160, 80)


def test_simcc_weights_are_zero_for_unlabeled_and_off_grid_joints():
    # trained when the nearest bin is on the grid: x * 2 in [-0.5, 383.5), y * 2 in [-0.5, 511.5)
    kp = np.array([[[50.0, 60.0, 2], [50.0, 60.0, 0], [-0.2, 100.0, 2], [-0.3, 100.0, 2], [191.7, 100.0, 1],
                    [191.8, 100.0, 2], [50.0, 255.7, 2], [50.0, 255.8, 2], [50.0, -0.3, 2], [300.0, 20.0, 2]]],
                  np.float32)
    t, w = simcc.encode(kp)
    np.testing.assert_array_equal(w, [[1, 0, 1, 0, 1, 0, 1, 0, 0, 0]])
    assert np.abs(t[0, w[0] == 0]).max() == 0  # no target where there is no weight


def test_simcc_round_trip_within_half_a_bin():
    kp = random_keypoints(np.random.default_rng(3), 50, (-0.25, 191.7), (-0.25, 255.7))
    t, w = simcc.encode(kp)
    assert w.min() == 1
    xy, conf = simcc.decode(t)
    err = np.abs(xy - kp[..., :2])
    assert err.max() <= 1 / (2 * simcc.split) + 1e-4
    assert 0.1 < err.mean() < 0.15  # uniform in [0, 0.25]: not exact, the argmax bin
    assert 0.7 < conf.min() and conf.max() <= 1  # exact targets: sharp peaks (see the confidence test)
    # a finer split quantises more finely
    fine = SimCCCodec(split=4.0)
    xy4, _ = fine.decode(fine.encode(kp)[0])
    assert np.abs(xy4 - kp[..., :2]).max() <= 1 / 8 + 1e-4


def test_simcc_confidence_is_the_softmaxed_peak_next_to_a_targets():
    """1 for a joint's own target on a bin centre; less half a bin off (a flatter softmax peak);
    the same for logits shifted by a constant; low for flat or softened outputs."""
    kp = random_keypoints(np.random.default_rng(5), 20, (5, 185), (5, 250))
    kp[..., :2] = np.round(kp[..., :2] * 2) / 2  # on bin centres
    t, _ = simcc.encode(kp)
    _, conf = simcc.decode(t)
    np.testing.assert_allclose(conf, 1.0, atol=1e-5)
    half = kp.copy()
    half[..., 0] += 0.25  # half a bin off in x only
    _, conf_half = simcc.decode(simcc.encode(half)[0])
    assert 0.7 < conf_half.min() and conf_half.max() < 0.8
    np.testing.assert_allclose(simcc.decode(t + 3.0)[1], conf, atol=1e-5)  # offset-free
    assert simcc.decode(0.5 * t)[1].max() < 0.5  # a softer peak: less sure
    assert simcc.decode(np.zeros_like(t))[1].max() < 0.01  # flat: 1/bins of a peak


def test_simcc_flip_back_maps_the_flipped_crops_outputs_onto_the_original_joints():
    """Outputs of the mirrored crop, flipped back, decode exactly as the original outputs do; merely
    reversing the x bins would put every joint one bin (half a pixel) off."""
    kp = random_keypoints(np.random.default_rng(1), 40)
    mirrored = simcc.encode(torch.from_numpy(mirror(kp)))[0]
    back = simcc.flip_back(mirrored)
    direct = simcc.encode(torch.from_numpy(kp))[0]
    np.testing.assert_array_equal(simcc.decode(back)[0].numpy(), simcc.decode(direct)[0].numpy())
    torch.testing.assert_close(back[..., 1:383], direct[..., 1:383], atol=1e-5, rtol=0)  # one bin is shifted in
    torch.testing.assert_close(back[..., 384:], direct[..., 384:])  # y untouched
    vx, vy = simcc.split_xy(mirrored[:, list(FLIP_INDEX)])
    unshifted = torch.cat([torch.flip(vx, dims=[-1]), vy], -1)
    err = np.abs(simcc.decode(unshifted)[0].numpy() - kp[..., :2]).mean(axis=(0, 1))
    assert err[0] > 0.4 and err[0] > np.abs(simcc.decode(back)[0].numpy() - kp[..., :2]).mean(axis=(0, 1))[0] + 0.3


def test_simcc_loss_is_zero_for_the_targets_and_larger_for_other_outputs():
    kp = random_keypoints(np.random.default_rng(4), 8)
    kp[0, :3, 2] = 0
    target, weight = simcc.encode(torch.from_numpy(kp))
    same = float(simcc.loss(target, target, weight))
    zeros = float(simcc.loss(torch.zeros_like(target), target, weight))
    shifted = float(simcc.loss(torch.roll(target, 4, dims=-1), target, weight))
    assert abs(same) < 1e-6
    assert zeros > 1 and shifted > 1
    # unweighted joints do not count: any output for them leaves the loss unchanged
    noisy = target.clone()
    noisy[0, :3] = torch.randn(3, 896, generator=torch.Generator().manual_seed(0))
    assert float(simcc.loss(noisy, target, weight)) == pytest.approx(same, abs=1e-6)
    assert float(simcc.loss(torch.zeros_like(target), target, torch.zeros_like(weight))) == 0


def test_dark_is_never_worse_than_quarter_anywhere_on_the_grid():
    """Joints anywhere a target is made (to the very border and just beyond): DARK's error never
    exceeds the quarter step's worst (1 crop px at stride 4), which the blur near the border would
    otherwise break."""
    rng = np.random.default_rng(3)
    kp = np.concatenate([rng.uniform(-2, 190, (800, 6, 1)), rng.uniform(-2, 254, (800, 6, 1)),
                         np.full((800, 6, 1), 2.0)], -1).astype(np.float32)
    hm, w = codec.encode(kp)
    used = w > 0
    err = {d: np.abs(codec.decode(hm, decoding=d)[0] - kp[..., :2]).max(-1)[used] for d in ("quarter", "dark")}
    assert (err["dark"] <= np.maximum(err["quarter"], 1.0) + 1e-3).all()
    assert err["dark"].mean() < err["quarter"].mean() / 2
