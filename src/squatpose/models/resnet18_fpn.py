"""ResNet18-FPN: c3, c4, c5 projected to 256 channels, upsampled to 32 x 24 and summed,
one deconvolution to 64 x 48, a 1x1 conv to heatmaps."""

import torch.nn.functional as F
from torch import nn

from squatpose.models.backbone import ResNetStages, deconv_block, init_head


class ResNet18FPN(nn.Module):
    def __init__(self, pretrained: bool = False, num_joints: int = 6, channels: int = 256):
        super().__init__()
        self.backbone = ResNetStages(pretrained)
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in (128, 256, 512))
        self.deconv = deconv_block(channels, channels)
        self.head = nn.Conv2d(channels, num_joints, 1)
        init_head(self.deconv)
        init_head(self.head)

    def fuse(self, x):
        """The summed pyramid at stride 8 (256 x 32 x 24 for a 256 x 192 input)."""
        c3, c4, c5 = self.backbone(x)
        size = c3.shape[-2:]
        return sum(F.interpolate(lat(c), size=size, mode="nearest") if c.shape[-2:] != size else lat(c)
                   for lat, c in zip(self.lateral, (c3, c4, c5)))

    def forward(self, x):
        return self.head(self.deconv(self.fuse(x)))
