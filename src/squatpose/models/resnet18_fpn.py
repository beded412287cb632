"""ResNet18-FPN: c3, c4, c5 projected to 256 channels, upsampled to 32 x 24 and summed,
one deconvolution to 64 x 48, a 1x1 conv to heatmaps."""

from torch import nn

from squatpose.models.backbone import FPNFusion, deconv_block, init_head


class ResNet18FPN(nn.Module):
    def __init__(self, pretrained: bool = False, num_joints: int = 6, channels: int = 256):
        super().__init__()
        self.fuse = FPNFusion(pretrained, channels)
        self.deconv = deconv_block(channels, channels)
        self.head = nn.Conv2d(channels, num_joints, 1)
        init_head(self.deconv)
        init_head(self.head)

    def forward(self, x):
        return self.head(self.deconv(self.fuse(x)))
