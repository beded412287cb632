import urllib.error
from dataclasses import asdict

import pytest
import torch

from squatpose.codec import HeatmapCodec, SimCCCodec, make_codec
from squatpose.config import CodecConfig, CropConfig
from squatpose.errors import SquatposeError
from squatpose.models import ARCHITECTURES, build, count_macs, count_params, load_checkpoint, save_checkpoint
from squatpose.models.heads import HeatmapHead, SimCCHead

CODECS = {"heatmap-s4": HeatmapCodec(), "heatmap-s2": HeatmapCodec(stride=2), "simcc": SimCCCodec()}


@pytest.mark.parametrize("codec_name", list(CODECS))
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_model_maps_images_to_its_codecs_outputs(name, codec_name):
    codec = CODECS[codec_name]
    torch.manual_seed(0)
    model = build(name, codec).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 256, 192))
    expected = {"heatmap-s4": (64, 48), "heatmap-s2": (128, 96), "simcc": (384 + 512,)}[codec_name]
    assert codec.output_shape == expected
    assert out.shape == (2, 6, *expected) and torch.isfinite(out).all()
    assert out.std() > 0  # a real function of the image, not a constant
    kp, conf = codec.decode(out)
    assert kp.shape == (2, 6, 2) and conf.shape == (2, 6)


def test_the_default_head_is_stride_4_heatmaps():
    model = build("dilated")
    assert isinstance(model.head, HeatmapHead) and model.head[-1].out_channels == 6
    assert isinstance(build("dilated", SimCCCodec()).head, SimCCHead)
    with torch.no_grad():
        assert build("dilated").eval()(torch.zeros(1, 3, 256, 192)).shape == (1, 6, 64, 48)
    with pytest.raises(ValueError, match="heatmap stride 8"):
        build("dilated", HeatmapCodec(stride=8))


def test_smaller_crops_give_smaller_outputs():
    crop = CropConfig(96, 128)
    for cfg, shape in ((CodecConfig(), (32, 24)), (CodecConfig(stride=2), (64, 48)),
                       (CodecConfig(kind="simcc", split=2.0), (192 + 256,))):
        codec = make_codec(cfg, crop)
        with torch.no_grad():
            out = build("dilated", codec).eval()(torch.randn(2, 3, 128, 96))
        assert codec.output_shape == shape and out.shape == (2, 6, *shape)


def test_sizes_and_costs():
    sizes = {n: (count_params(build(n)), count_macs(build(n))) for n in ARCHITECTURES}
    # ResNet18 without its classifier has 11.18M parameters; the heads add the rest
    assert 15.3e6 < sizes["resnet18"][0] < 15.5e6
    assert sizes["dilated"][0] < 1e6 < sizes["resnet18_fpn"][0] < sizes["resnet18_fpn_attn"][0] < sizes["resnet18"][0]
    assert sizes["dilated"][1] < sizes["resnet18_fpn"][1] < sizes["resnet18_fpn_attn"][1] < sizes["resnet18"][1]
    assert 2.5e9 < sizes["resnet18"][1] < 3.5e9
    assert sizes["dilated"][0] < sizes["dilated_wide"][0] < 2e6 and sizes["dilated"][1] < sizes["dilated_wide"][1]
    assert sizes["mobilenet"][1] == min(s[1] for s in sizes.values()) and sizes["mobilenet"][1] < 0.5e9
    # the heads: a 1x1 conv (stride 4); a deconvolution first (stride 2, more compute); SimCC's MLP
    heads = {k: build("resnet18", c) for k, c in CODECS.items()}
    assert count_params(heads["heatmap-s4"].head) == 256 * 6 + 6
    assert count_macs(heads["heatmap-s2"]) > 1.3 * count_macs(heads["heatmap-s4"])
    simcc_head = (256 * 6 * 49 + 6) + (64 * 48 * 256 + 256) + 2 * 256 + (256 * 384 + 384) + (256 * 512 + 512)
    assert count_params(heads["simcc"].head) == simcc_head
    assert count_params(heads["simcc"]) - count_params(heads["simcc"].head) == sizes["resnet18"][0] - (256 * 6 + 6)


def test_pretrained_offline_is_one_line_naming_where_to_put_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(SquatposeError) as e:
        build("resnet18", pretrained=True)
    msg = str(e.value)
    assert "\n" not in msg and "resnet18-f37072fd.pth" in msg and str(tmp_path) in msg
    assert "pretrained: false" in msg


def meta_for(model: str, codec: CodecConfig, crop: CropConfig = CropConfig()) -> dict:
    return {"model": model, "row": "x", "crop": asdict(crop), "codec": asdict(codec)}


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    model = build("dilated")
    save_checkpoint(tmp_path / "m.pt", model, meta_for("dilated", CodecConfig()))
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["row"] == "x" and not loaded.training
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "m.pt").read_bytes()[:5000])
    with pytest.raises(SquatposeError, match="cut.pt: not a squatpose checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(SquatposeError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_checkpoint_round_trip_with_a_simcc_codec(tmp_path):
    """A SimCC model (on 96x128 crops) comes back with its head and weights from the meta alone."""
    crop, cfg = CropConfig(96, 128), CodecConfig(kind="simcc", split=2.0, sigma=3.0)
    codec = make_codec(cfg, crop)
    torch.manual_seed(0)
    model = build("dilated", codec).eval()
    save_checkpoint(tmp_path / "m.pt", model, meta_for("dilated", cfg, crop))
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["codec"] == asdict(cfg) and isinstance(loaded.head, SimCCHead) and not loaded.training
    assert model.state_dict().keys() == loaded.state_dict().keys()
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        out = loaded(x)
        assert out.shape == (2, 6, 192 + 256)
        torch.testing.assert_close(out, model(x), rtol=0, atol=0)
    # the same weights under a heatmap meta do not fit the heatmap head: refused, not half-loaded
    save_checkpoint(tmp_path / "wrong.pt", model, meta_for("dilated", CodecConfig(), crop))
    with pytest.raises(SquatposeError, match="wrong.pt: not a squatpose checkpoint"):
        load_checkpoint(tmp_path / "wrong.pt")
