"""The keypoint architectures: each is a trunk (images (B, 3, H, W) -> features at stride 4) and
the head of the codec it is trained with (models/heads.py): (B, 6, H/4, W/4) heatmaps by default."""

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from squatpose.codec import Codec, HeatmapCodec, codec_from_meta
from squatpose.joints import NUM_JOINTS
from squatpose.models import dilated, dilated_wide, mobilenet, resnet18, resnet18_fpn, resnet18_fpn_attn
from squatpose.models.heads import make_head

# name -> trunk; the name is also the module file (models/<name>.py), a DVC dependency of its rows
ARCHITECTURES = {
    "resnet18": resnet18.ResNet18Deconv,
    "resnet18_fpn": resnet18_fpn.ResNet18FPN,
    "dilated": dilated.DilatedNet,
    "resnet18_fpn_attn": resnet18_fpn_attn.ResNet18FPNAttention,
    "dilated_wide": dilated_wide.DilatedWide,
    "mobilenet": mobilenet.MobileNetDeconv,
}


class PoseNet(nn.Module):
    """A trunk (images -> stride-4 features) followed by a codec's head (features -> outputs)."""

    def __init__(self, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.trunk, self.head = trunk, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def build(name: str, codec: Codec | None = None, pretrained: bool = False) -> PoseNet:
    """A fresh model of architecture `name` with `codec`'s head (default: 48 x 64 heatmaps of a
    192 x 256 crop), ImageNet backbone weights if `pretrained`."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(ARCHITECTURES)}")
    trunk = ARCHITECTURES[name](pretrained=pretrained)
    return PoseNet(trunk, make_head(trunk.out_channels, codec or HeatmapCodec(), NUM_JOINTS))


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, height: int = 256, width: int = 192) -> int:
    """Multiply-accumulates of one forward pass on one image (FLOPs / 2, counted by torch)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, height, width, device=next(model.parameters()).device))
    model.train(was_training)
    return counter.get_total_flops() // 2


def save_checkpoint(path, model: nn.Module, meta: dict) -> None:
    """Write weights and metadata (architecture name under meta['model']) atomically."""
    from squatpose.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"meta": meta, "state_dict": model.state_dict()}, tmp)


def load_checkpoint(path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The model in a checkpoint written by `save_checkpoint`, in eval mode, and its metadata
    (weights only: a checkpoint cannot run code when loaded)."""
    from pathlib import Path

    from squatpose.errors import SquatposeError

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        meta, state = ckpt["meta"], ckpt["state_dict"]
        model = build(meta["model"], codec_from_meta(meta))
        model.load_state_dict(state)
    except FileNotFoundError:
        raise SquatposeError(f"{path}: checkpoint not found") from None
    except Exception as e:  # a truncated file, another program's checkpoint, a renamed layer
        raise SquatposeError(f"{path}: not a squatpose checkpoint ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    return model.to(device).eval(), meta
