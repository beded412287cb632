import numpy as np
import pytest
import torch

from squatpose import joints
from squatpose.angles import angle_at, knee_angles
from squatpose.codec import HeatmapCodec, SimCCCodec, in_crop_keypoints
from squatpose.coco import person_records
from squatpose.config import CropConfig
from squatpose.dataset import ShardDataset, crops_to_tensor
from squatpose.evaluate import Predictions, accuracy
from squatpose.loss import JointsMSELoss, kl_discrete_loss
from squatpose.metrics import knee_angle_error, oks_ap, pck
from squatpose.shards import write_shards
from tests.conftest import SAMPLE, ann_path


def test_joints_mse_loss_is_the_weighted_per_joint_mean():
    pred, target = torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 4, 5)
    pred[0, 0] = 1.0  # joint 0 of sample 0 off by 1 everywhere: per-joint MSE 1
    pred[1, 2, 0, 0] = 2.0  # one pixel off by 2: per-joint MSE 4 / 20
    weight = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    loss = JointsMSELoss()(pred, target, weight)
    assert float(loss) == pytest.approx((1.0 + 0 + 0 + 0 + 0 + 0) / 6)  # sample 1's joint 2 weighted out
    assert float(JointsMSELoss(use_target_weight=False)(pred, target, weight)) == pytest.approx((1 + 0.2) / 6)


def test_kl_discrete_loss_is_the_weighted_kl_of_the_softened_distributions():
    rng = np.random.default_rng(0)
    logits, target = rng.normal(size=(2, 3, 7)), rng.uniform(size=(2, 3, 7))
    weight = np.array([[1.0, 1.0, 0.0], [1.0, 0.5, 1.0]])
    beta = 10.0

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p, q = softmax(beta * logits), softmax(beta * target)
    per_joint = (q * np.log(q / p)).sum(-1)
    expect = (per_joint * weight).mean()
    got = kl_discrete_loss(torch.from_numpy(logits), torch.from_numpy(target), torch.from_numpy(weight), beta)
    assert float(got) == pytest.approx(expect, rel=1e-5) and expect > 0
    t = torch.from_numpy(target)
    assert abs(float(kl_discrete_loss(t, t, torch.from_numpy(weight)))) < 1e-6
    # the temperature: a smaller beta softens both distributions and the loss
    assert float(kl_discrete_loss(torch.from_numpy(logits), t, torch.from_numpy(weight), 1.0)) < float(got)


def _box_case():
    gt = np.zeros((2, 6, 3))
    gt[..., 0], gt[..., 1], gt[..., 2] = 50.0, 80.0, 2
    gt[1, 5, 2] = 0  # one unlabeled joint
    boxes = np.array([[0, 0, 100, 200], [0, 0, 300, 40]], float)  # max side 200 and 300
    return gt, boxes


def test_pck_is_strictly_below_alpha_times_the_longer_bbox_side():
    gt, boxes = _box_case()
    pred = gt[..., :2].copy()
    pred[0, :, 0] += [9.9, 10.0, 10.1, 0, 0, 0]  # threshold 0.05 * 200 = 10 px: 9.9 in, 10.0 out
    pred[1, :, 1] += [14.9, 15.0, 0, 0, 0, 99]  # threshold 15 px; joint 5 unlabeled, ignored
    out = pck(pred, gt, boxes, 0.05)
    assert out["overall"] == pytest.approx(8 / 11)
    assert out["left_hip"] == 1.0 and out["right_hip"] == 0.0 and out["left_knee"] == 0.5
    assert out["right_ankle"] == 1.0  # only person 0 counts
    pred[1, 5] = gt[1, 5, :2]
    assert pck(pred, gt, boxes, 0.1)["overall"] == 1.0  # 10.1 < 20 and 15 < 30


def test_angles():
    np.testing.assert_allclose(angle_at([0, 0], [0, 1], [0, 2]), 180)
    np.testing.assert_allclose(angle_at([0, 0], [0, 1], [1, 1]), 90)
    np.testing.assert_allclose(angle_at([1, 0], [0, 0], [1, 1]), 45)
    assert np.isnan(angle_at([0, 0], [0, 0], [1, 1]))
    kp = np.zeros((1, 6, 3))
    kp[0, :, :2] = [[0, 0], [10, 0], [0, 10], [10, 10], [10, 10], [10, 20]]  # left: knee bent 90°
    angles = knee_angles(kp)
    np.testing.assert_allclose([angles["left"][0], angles["right"][0]], [90, 180])
    gt = kp.copy()
    gt[..., 2] = 2
    err = knee_angle_error(kp[..., :2], gt)
    assert err["left_mae_deg"] == pytest.approx(0) and err["left_n"] == 1
    gt[0, 1, 2] = 0  # right hip unlabeled: no right-side angle to score
    assert knee_angle_error(kp[..., :2], gt)["right_n"] == 0


@pytest.fixture(scope="module")
def val_shards(tmp_path_factory):
    table = person_records(ann_path(SAMPLE, "val"), SAMPLE / "val2017")[0]
    out = tmp_path_factory.mktemp("shards")
    write_shards(table, out, CropConfig(), shard_size=64, workers=1, progress=False)
    return ShardDataset(out), table


CODECS = {"heatmap-s4-quarter": HeatmapCodec(decoding="quarter"), "heatmap-s4-dark": HeatmapCodec(decoding="dark"),
          "heatmap-s2": HeatmapCodec(stride=2, decoding="dark"), "simcc": SimCCCodec()}
# the decoding error (crop px per axis) of exact targets, largest and mean: a quarter cell, mean
# ~1/8 cell (quarter); DARK near exact, but no better than quarter within 3 cells of the border,
# where it falls back to it; half a bin, mean ~1/4 bin (SimCC, split 2)
BOUNDS = {"heatmap-s4-quarter": (1.0, 0.6), "heatmap-s4-dark": (1.0, 0.05), "heatmap-s2": (0.5, 0.01),
          "simcc": (0.25, 0.15)}


def stored_targets(ds: ShardDataset, codec) -> tuple[np.ndarray, np.ndarray]:
    """The codec's targets and weights of the stored keypoints, as training makes them."""
    kp = in_crop_keypoints(torch.from_numpy(ds.gather("kp_crop")), torch.from_numpy(ds.gather("in_crop")))
    target, weight = codec.encode(kp)
    return target.numpy(), weight.numpy()


@pytest.mark.parametrize("codec_name", list(CODECS))
def test_ground_truth_targets_decoded_score_pck_one_and_ap_one(val_shards, codec_name):
    ds, table = val_shards
    codec = CODECS[codec_name]
    # Joints outside the crop have no target (weight 0) and cannot decode; score the persons
    # whose labeled joints all have one: every joint decodes within a quarter cell or half a bin.
    _, weights = stored_targets(ds, codec)
    inside = ((weights > 0) == (joints.keypoints_from_table(table)[:, :, 2] > 0)).all(axis=1)
    assert 0.9 < inside.mean() < 1.0
    sub = table[inside].reset_index(drop=True)
    ds_in = ShardDataset(ds.dir, sub["ann_id"].to_numpy())
    target, weight = stored_targets(ds_in, codec)
    kp_in, conf_in = codec.decode(target)
    used = weight > 0
    err = np.abs(kp_in - ds_in.gather("kp_crop")[..., :2])[used]
    assert err.max() <= BOUNDS[codec_name][0] + 1e-4 and err.mean() < BOUNDS[codec_name][1]
    # exact targets are sure: heatmap peaks within half a cell of the joint, exp(-(0.5² + 0.5²) / 8) > 0.9;
    # SimCC peaks as sharp as a target's up to half a bin off a bin centre (> 0.7)
    assert conf_in[used].min() > (0.7 if codec_name == "simcc" else 0.9)
    m = accuracy(Predictions(kp_in, conf_in, 0.0, np.zeros(0)), ds_in)
    assert m["pck@0.05"] == 1.0 and m["pck@0.1"] == 1.0
    assert all(v == 1.0 for v in m["pck@0.05_joints"].values())
    assert m["ap"] == pytest.approx(1.0)
    assert m["knee_angle"]["left_mae_deg"] < 2.0 and m["knee_angle"]["left_n"] > 10


def test_oks_ap_drops_for_far_predictions(val_shards):
    _, table = val_shards
    gt = joints.keypoints_from_table(table)
    boxes = table[["bbox_x", "bbox_y", "bbox_w", "bbox_h"]].to_numpy()
    args = (gt, boxes, table["area"].to_numpy(), table["image_id"].to_numpy())
    assert oks_ap(*args, gt[..., :2], np.ones((len(gt), 6)))["ap"] == pytest.approx(1.0)
    far = gt[..., :2] + boxes[:, None, 2:4]  # a whole box away
    assert oks_ap(*args, far, np.ones((len(gt), 6)))["ap"] == pytest.approx(0.0)


class _Oracle(torch.nn.Module):
    """Answers each crop with its ground-truth heatmaps and each mirrored crop with the heatmaps of
    the mirrored keypoints: what a perfect, flip-consistent model would predict."""

    def __init__(self, ds, codec):
        super().__init__()
        from squatpose.joints import FLIP_INDEX

        kp = ds.gather("kp_crop")
        kp[..., 2] *= ds.gather("in_crop")
        mirrored = kp.copy()
        mirrored[..., 0] = codec.crop_w - 1 - kp[..., 0]
        mirrored = mirrored[:, list(FLIP_INDEX)]
        self.images = crops_to_tensor(torch.stack([ds[i]["image"] for i in range(len(ds))]))
        self.plain = torch.from_numpy(codec.encode(kp)[0])
        self.flipped = torch.from_numpy(codec.encode(mirrored)[0])

    def forward(self, x):
        flat = self.images.flatten(1)
        out = []
        for img in x:
            hit = (flat == img.flatten()).all(1)
            if hit.any():
                out.append(self.plain[hit.nonzero()[0, 0]])
            else:
                mirror = (flat == torch.flip(img, dims=[2]).flatten()).all(1)
                out.append(self.flipped[mirror.nonzero()[0, 0]])
        return torch.stack(out)


@pytest.mark.parametrize("codec_name", list(CODECS))
def test_predict_with_flip_test_on_a_perfect_model(val_shards, codec_name):
    from squatpose.evaluate import predict

    ds, table = val_shards
    codec = CODECS[codec_name]
    inside = ((stored_targets(ds, codec)[1] > 0) == (joints.keypoints_from_table(table)[:, :, 2] > 0)).all(axis=1)
    sub = table[inside].reset_index(drop=True).iloc[:12]
    ds = ShardDataset(ds.dir, sub["ann_id"].to_numpy())
    oracle = _Oracle(ds, codec)
    plain = predict(oracle, ds, codec, batch_size=5, keep_heatmaps=3)
    flipped = predict(oracle, ds, codec, batch_size=5, flip_test=True)
    gt = ds.gather("kp_crop")
    w = stored_targets(ds, codec)[1] > 0
    assert w.sum() > 50
    err_plain = np.abs(plain.kp_crop - gt[..., :2])[w]
    err_flip = np.abs(flipped.kp_crop - gt[..., :2])[w]
    bound, mean = BOUNDS[codec_name]
    assert err_plain.max() <= bound + 1e-4 and err_flip.max() <= 1.5 * bound
    assert err_plain.mean() < mean and err_flip.mean() < mean
    assert accuracy(flipped, ds)["pck@0.05"] == 1.0
    assert plain.loss < 1e-6  # the oracle's outputs are the targets
    assert flipped.loss == pytest.approx(plain.loss)  # the loss is of the plain outputs
    height, width = (codec.bins_y, codec.bins_x) if codec_name == "simcc" else codec.output_shape
    assert plain.heatmaps.shape == (3, 6, height, width)  # for figures
