"""The keypoint architectures: each maps (B, 3, 256, 192) images to (B, 6, 64, 48) heatmaps."""

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from squatpose.models import dilated, resnet18, resnet18_fpn, resnet18_fpn_attn

ARCHITECTURES = {
    "resnet18": resnet18.ResNet18Deconv,
    "resnet18_fpn": resnet18_fpn.ResNet18FPN,
    "dilated": dilated.DilatedNet,
    "resnet18_fpn_attn": resnet18_fpn_attn.ResNet18FPNAttention,
}


def build(name: str, pretrained: bool = False, num_joints: int = 6) -> nn.Module:
    """A fresh model of architecture `name` (ImageNet backbone weights if `pretrained`)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](pretrained=pretrained, num_joints=num_joints)


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
    """The model in a checkpoint written by `save_checkpoint`, in eval mode, and its metadata."""
    from pathlib import Path

    from squatpose.errors import SquatposeError

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        meta, state = ckpt["meta"], ckpt["state_dict"]
        model = build(meta["model"])
        model.load_state_dict(state)
    except FileNotFoundError:
        raise SquatposeError(f"{path}: checkpoint not found") from None
    except Exception as e:  # a truncated file, another program's checkpoint, a renamed layer
        raise SquatposeError(f"{path}: not a squatpose checkpoint ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    return model.to(device).eval(), meta
