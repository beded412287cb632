"""Pieces shared by the architectures: ImageNet weights through torchvision, the ResNet18 trunk,
the deconvolution block, the FPN fusion, and SimpleBaseline's head initialisation."""

import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import ResNet18_Weights

from squatpose.errors import SquatposeError


def imagenet_weights(factory, weights, name: str) -> nn.Module:
    """torchvision's `factory(weights=weights)`; ImageNet weights are downloaded once and cached.

    Offline, a missing weights file is a one-line `SquatposeError` saying where to put it.
    """
    try:
        return factory(weights=weights)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        import torch.hub

        filename = weights.url.rsplit("/", 1)[-1]
        raise SquatposeError(
            f"ImageNet weights for {name} could not be downloaded ({type(e).__name__}): "
            f"download {weights.url} and place it at {torch.hub.get_dir()}/checkpoints/{filename}, "
            "or set pretrained: false in params.yaml"
        ) from None


def resnet18_trunk(pretrained: bool) -> nn.Module:
    """torchvision's ResNet18; with `pretrained`, its ImageNet weights (downloaded once, cached)."""
    return imagenet_weights(torchvision.models.resnet18, ResNet18_Weights.IMAGENET1K_V1 if pretrained else None,
                            "resnet18")


class ResNetStages(nn.Module):
    """ResNet18 split into its stride-4 stem and stages c2..c5 (strides 4, 8, 16, 32)."""

    def __init__(self, pretrained: bool):
        super().__init__()
        r = resnet18_trunk(pretrained)
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4

    def forward(self, x):
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c3, c4, c5


def deconv_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """4x4 transposed convolution, stride 2 (doubles height and width), BN, ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def init_head(module: nn.Module) -> None:
    """SimpleBaseline's initialisation of the layers after the backbone: conv and deconv weights
    N(0, 0.001), biases 0, BN weight 1 and bias 0. The heatmaps start near zero, like the targets."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class FPNFusion(nn.Module):
    """ResNet18's c3, c4, c5 projected to `channels` by 1x1 convs, upsampled to c3's size
    (32 x 24 for a 256 x 192 input) and summed."""

    def __init__(self, pretrained: bool, channels: int = 256):
        super().__init__()
        self.backbone = ResNetStages(pretrained)
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in (128, 256, 512))

    def forward(self, x):
        c3, c4, c5 = self.backbone(x)
        size = c3.shape[-2:]
        return sum(F.interpolate(lat(c), size=size, mode="nearest") if c.shape[-2:] != size else lat(c)
                   for lat, c in zip(self.lateral, (c3, c4, c5)))
