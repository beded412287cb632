import numpy as np
import pytest
import torch

from squatpose import joints
from squatpose.angles import angle_at, knee_angles
from squatpose.codec import HeatmapCodec
from squatpose.coco import person_records
from squatpose.config import CropConfig, HeatmapConfig
from squatpose.evaluate import Predictions, accuracy
from squatpose.loss import JointsMSELoss
from squatpose.metrics import knee_angle_error, oks_ap, pck
from squatpose.shards import ShardDataset, write_shards
from tests.conftest import SAMPLE, ann_path


def test_joints_mse_loss_is_the_weighted_per_joint_mean():
    pred, target = torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 4, 5)
    pred[0, 0] = 1.0  # joint 0 of sample 0 off by 1 everywhere: per-joint MSE 1
    pred[1, 2, 0, 0] = 2.0  # one pixel off by 2: per-joint MSE 4 / 20
    weight = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    loss = JointsMSELoss()(pred, target, weight)
    assert float(loss) == pytest.approx((1.0 + 0 + 0 + 0 + 0 + 0) / 6)  # sample 1's joint 2 weighted out
    assert float(JointsMSELoss(use_target_weight=False)(pred, target, weight)) == pytest.approx((1 + 0.2) / 6)


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
    write_shards(table, out, CropConfig(), HeatmapConfig(), shard_size=64, workers=1, progress=False)
    return ShardDataset(out), table


def test_ground_truth_heatmaps_decoded_score_pck_one_and_ap_one(val_shards):
    ds, table = val_shards
    codec = HeatmapCodec()
    # Joints outside the crop have no target (weight 0) and cannot decode; score the persons
    # whose labeled joints all have one: every joint decodes within 1/4 heatmap pixel.
    weights = ds.gather("weights")
    inside = ((weights > 0) == (joints.keypoints_from_table(table)[:, :, 2] > 0)).all(axis=1)
    assert 0.9 < inside.mean() < 1.0
    sub = table[inside].reset_index(drop=True)
    ds_in = ShardDataset(ds.dir, sub["ann_id"].to_numpy())
    kp_in, conf_in = codec.decode(ds_in.gather("heatmaps").astype(np.float32))
    m = accuracy(Predictions(kp_in, conf_in, 0.0, np.zeros(0)), ds_in, sub)
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
        mirrored = kp.copy()
        mirrored[..., 0] = codec.crop_w - 1 - kp[..., 0]
        mirrored = mirrored[:, list(FLIP_INDEX)]
        self.images = torch.stack([ds[i]["image"] for i in range(len(ds))])
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


def test_predict_with_flip_test_on_a_perfect_model(val_shards):
    from squatpose.evaluate import predict

    ds, table = val_shards
    inside = ((ds.gather("weights") > 0) == (joints.keypoints_from_table(table)[:, :, 2] > 0)).all(axis=1)
    sub = table[inside].reset_index(drop=True).iloc[:12]
    ds = ShardDataset(ds.dir, sub["ann_id"].to_numpy())
    codec = HeatmapCodec()
    oracle = _Oracle(ds, codec)
    plain = predict(oracle, ds, codec, batch_size=5)
    flipped = predict(oracle, ds, codec, batch_size=5, flip_test=True)
    gt = ds.gather("kp_crop")
    w = ds.gather("weights") > 0
    err_plain = np.abs(plain.kp_crop - gt[..., :2])[w]
    err_flip = np.abs(flipped.kp_crop - gt[..., :2])[w]
    assert err_plain.max() <= 1.0 + 1e-4 and err_flip.max() <= 1.5  # quarter-pixel decoding
    assert accuracy(flipped, ds, sub)["pck@0.05"] == 1.0
    assert plain.loss < 1e-6  # the oracle's heatmaps are the targets
