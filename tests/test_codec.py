import numpy as np
import pytest
import torch

from squatpose.codec import HeatmapCodec

codec = HeatmapCodec()  # 192x256 crop, 48x64 heatmaps, sigma 2


def test_encode_puts_a_unit_gaussian_at_position_over_stride():
    kp = np.array([[[40.0, 80.0, 2], [0, 0, 0], [100.0, 30.0, 1]]], np.float32)
    hm, w = codec.encode(kp)
    assert hm.shape == (1, 3, 64, 48) and hm.dtype == np.float32
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
    xy, conf = codec.decode(hm)
    np.testing.assert_allclose(xy[0], [[41.0, 80.0], [39.0, 80.0], [40.0, 81.0]])
    np.testing.assert_allclose(conf[0, 2], 0.5 * np.exp(-0.25 / 8), rtol=1e-5)
    xy_plain, _ = codec.decode(hm, quarter_shift=False)
    np.testing.assert_allclose(xy_plain[0], [[40.0, 80.0], [40.0, 80.0], [40.0, 80.0]])


def test_torch_and_numpy_give_the_same_result():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 190, (4, 6, 2)), np.full((4, 6, 1), 2.0)], -1).astype(np.float32)
    hm_np, w_np = codec.encode(kp)
    hm_t, w_t = codec.encode(torch.from_numpy(kp))
    assert isinstance(hm_t, torch.Tensor)
    np.testing.assert_array_equal(hm_np, hm_t.numpy())
    np.testing.assert_array_equal(w_np, w_t.numpy())
    np.testing.assert_array_equal(codec.decode(hm_np)[0], codec.decode(hm_t)[0].numpy())


def test_flip_back_maps_the_flipped_crops_heatmaps_onto_the_original_joints():
    """Heatmaps of the mirrored crop (x -> 191 - x, left/right swapped), flipped back, decode to
    the original joints as closely as the original heatmaps do; without the 0.75-pixel shift
    they would sit 3 crop pixels off."""
    from squatpose.joints import FLIP_INDEX

    rng = np.random.default_rng(1)
    kp = np.concatenate([rng.uniform(8, 184, (40, 6, 1)), rng.uniform(8, 248, (40, 6, 1)),
                         np.full((40, 6, 1), 2.0)], -1).astype(np.float32)
    mirrored = kp.copy()
    mirrored[..., 0] = 191 - kp[..., 0]
    mirrored = mirrored[:, list(FLIP_INDEX)]
    back = codec.flip_back(codec.encode(torch.from_numpy(mirrored))[0])
    xy, _ = codec.decode(back)
    err = np.abs(xy.numpy() - kp[..., :2]).mean(axis=(0, 1))
    direct = np.abs(codec.decode(codec.encode(kp)[0])[0] - kp[..., :2]).mean(axis=(0, 1))
    assert err[0] < direct[0] + 0.1 and err[1] == pytest.approx(direct[1], abs=1e-6)
    unshifted = torch.flip(codec.encode(torch.from_numpy(mirrored))[0], dims=[-1])[:, list(FLIP_INDEX)]
    assert np.abs(codec.decode(unshifted)[0].numpy() - kp[..., :2]).mean(axis=(0, 1))[0] > 2.5
