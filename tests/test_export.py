"""ONNX export: one self-contained file that onnxruntime runs, agreeing with PyTorch on real crops."""

from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

from conftest import SAMPLE
from squatpose.codec import HeatmapCodec, SimCCCodec, codec_from_meta
from squatpose.config import CodecConfig
from squatpose.dataset import crops_to_tensor
from squatpose.errors import SquatposeError
from squatpose.export import AGREEMENT, export_onnx
from squatpose.fingerprint import file_sha256
from squatpose.pose_model import load_pose_model
from squatpose.imaging import read_image
from squatpose.models import ARCHITECTURES, build, save_checkpoint
from squatpose.models.heads import SimCCHead

META = {"crop": {"width": 192, "height": 256, "padding": 1.25}, "codec": asdict(CodecConfig())}
SIMCC_META = {**META, "codec": asdict(CodecConfig(kind="simcc"))}


def real_crops(n: int = 3) -> np.ndarray:
    """Real 192x256 crops of sample COCO images (uint8 RGB)."""
    import cv2

    paths = sorted((SAMPLE / "val2017").glob("*.jpg"))[:n]
    return np.stack([cv2.resize(read_image(p), (192, 256), interpolation=cv2.INTER_AREA) for p in paths])


def checkpoint(tmp_path, name: str, meta: dict = META):
    """A checkpoint of `name` whose outputs (heatmaps, or SimCC logits) peak near 1 on real crops,
    like a trained model's."""
    torch.manual_seed(0)
    model = build(name, codec_from_meta(meta)).eval()
    if isinstance(model.head, SimCCHead):
        last = [model.head.x, model.head.y]
    else:
        last = [[m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]]
    with torch.no_grad():
        peak = model(crops_to_tensor(real_crops())).abs().max()
        for layer in last:
            layer.weight.mul_(1 / peak)
            if layer.bias is not None:
                layer.bias.mul_(1 / peak)
    path = tmp_path / name / "model.pt"
    save_checkpoint(path, model, {"model": name, "row": f"{name}-test", **meta})
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_onnx_agrees_with_pytorch_on_real_crops(tmp_path, name):
    pt = checkpoint(tmp_path, name)
    diff = export_onnx(pt, tmp_path / "model.onnx")
    assert diff <= AGREEMENT
    crops = real_crops()
    ref, onnx = load_pose_model(pt), load_pose_model(tmp_path / "model.onnx")
    assert (ref.backend, onnx.backend) == ("torch", "onnx")
    a, b = ref.outputs(crops), onnx.outputs(crops)
    assert a.shape == b.shape == (3, 6, 64, 48)
    assert 0.3 < np.abs(a).max() <= 1.0 + 1e-6  # a trained model's scale, so 1e-3 is a real bound
    assert np.abs(a - b).max() <= AGREEMENT
    assert ref.codec == HeatmapCodec() and onnx.codec == ref.codec  # DARK decoding, from the meta
    stride = ref.codec.stride  # the argmax may move to a neighbour where neighbours tie
    assert np.abs(ref.codec.decode(a, decoding="quarter")[0] - onnx.codec.decode(b, decoding="quarter")[0]).max() \
        <= 0.25 * stride * 2 + 1e-6
    assert np.median(np.abs(ref.codec.decode(a)[0] - onnx.codec.decode(b)[0])) < 0.05
    assert onnx.meta["row"] == f"{name}-test"


@pytest.mark.slow
def test_onnx_agrees_with_pytorch_for_a_simcc_model(tmp_path):
    pt = checkpoint(tmp_path, "dilated", SIMCC_META)
    diff = export_onnx(pt, tmp_path / "model.onnx")
    assert diff <= AGREEMENT
    crops = real_crops()
    ref, onnx = load_pose_model(pt), load_pose_model(tmp_path / "model.onnx")
    assert ref.codec == onnx.codec == SimCCCodec()
    import onnx as onnx_lib

    graph = onnx_lib.load(str(tmp_path / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["outputs"]
    a, b = ref.outputs(crops), onnx.outputs(crops)
    assert a.shape == b.shape == (3, 6, 384 + 512)
    assert 0.3 < np.abs(a).max() <= 1.0 + 1e-6
    assert np.abs(a - b).max() <= AGREEMENT
    # the same bins, but where two logits tie within AGREEMENT
    kp_a, kp_b = ref.codec.decode(a)[0], onnx.codec.decode(b)[0]
    assert np.median(np.abs(kp_a - kp_b)) == 0


@pytest.mark.slow
def test_onnx_backend_exports_a_checkpoint_once_and_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SQUATPOSE_CACHE", str(tmp_path / "cache"))
    pt = checkpoint(tmp_path, "dilated")
    first = load_pose_model(pt, backend="onnx")
    onnx_path = first.path
    assert onnx_path.parent == tmp_path / "cache" / "onnx" and onnx_path.is_file()
    assert sorted(p.name for p in pt.parent.iterdir()) == ["model.pt"]  # nothing added beside the checkpoint
    assert first.meta["checkpoint_sha256"] == file_sha256(pt)
    stamp = onnx_path.stat().st_mtime_ns
    again = load_pose_model(pt, backend="onnx")
    assert onnx_path.stat().st_mtime_ns == stamp and again.backend == "onnx"
    crops = real_crops(1)
    assert np.abs(again.outputs(crops) - load_pose_model(pt).outputs(crops)).max() <= AGREEMENT
    other = checkpoint(tmp_path / "other", "resnet18_fpn")  # other weights: another file, not the stale one
    assert load_pose_model(other, backend="onnx").path != onnx_path


def test_bad_model_files_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(SquatposeError, match="junk.onnx: not a readable ONNX model"):
        load_pose_model(junk)
    pt = tmp_path / "cut.pt"
    pt.write_bytes(checkpoint(tmp_path, "dilated").read_bytes()[:5000])
    with pytest.raises(SquatposeError, match="cut.pt: not a squatpose checkpoint"):
        load_pose_model(pt)
    with pytest.raises(SquatposeError, match="missing.pt: model not found"):
        load_pose_model(tmp_path / "missing.pt")
    with pytest.raises(SquatposeError, match="ONNX file runs with the onnx backend only"):
        load_pose_model(junk, backend="torch")


def test_an_onnx_file_from_elsewhere_is_refused(tmp_path):
    model = nn.Conv2d(3, 6, 1).eval()
    path = tmp_path / "other.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 8, 8),), str(path), dynamo=True, external_data=False, report=False)
    with pytest.raises(SquatposeError, match="not a squatpose ONNX export"):
        load_pose_model(path)
