"""A light backbone with a deconvolution head: torchvision's MobileNetV3-Large up to stride 16
(112 channels, its first 13 blocks), two 4x4 stride-2 deconvolutions (128 channels) to stride 4."""

import torchvision
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights

from squatpose.models.backbone import deconv_block, imagenet_weights, init_head


class MobileNetDeconv(nn.Module):
    def __init__(self, pretrained: bool = False, channels: int = 128):
        super().__init__()
        weights = MobileNet_V3_Large_Weights.IMAGENET1K_V1 if pretrained else None
        net = imagenet_weights(torchvision.models.mobilenet_v3_large, weights, "mobilenet")
        self.backbone = net.features[:13]
        self.deconv = nn.Sequential(deconv_block(112, channels), deconv_block(channels, channels))
        self.out_channels = channels
        init_head(self.deconv)

    def forward(self, x):
        return self.deconv(self.backbone(x))
