import urllib.error

import pytest
import torch

from squatpose.errors import SquatposeError
from squatpose.models import ARCHITECTURES, build, count_macs, count_params, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_model_maps_images_to_six_heatmaps(name):
    torch.manual_seed(0)
    model = build(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 256, 192))
    assert out.shape == (2, 6, 64, 48) and torch.isfinite(out).all()


def test_sizes_and_costs():
    sizes = {n: (count_params(build(n)), count_macs(build(n))) for n in ARCHITECTURES}
    # ResNet18 without its classifier has 11.18M parameters; the heads add the rest
    assert 15.3e6 < sizes["resnet18"][0] < 15.5e6
    assert sizes["dilated"][0] < 1e6 < sizes["resnet18_fpn"][0] < sizes["resnet18_fpn_attn"][0] < sizes["resnet18"][0]
    assert sizes["dilated"][1] < sizes["resnet18_fpn"][1] < sizes["resnet18_fpn_attn"][1] < sizes["resnet18"][1]
    assert 2.5e9 < sizes["resnet18"][1] < 3.5e9


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


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    model = build("dilated")
    save_checkpoint(tmp_path / "m.pt", model, {"model": "dilated", "row": "x"})
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["row"] == "x" and not loaded.training
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "m.pt").read_bytes()[:5000])
    with pytest.raises(SquatposeError, match="cut.pt: not a squatpose checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(SquatposeError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
