"""ResNet18-FPN: c3, c4, c5 projected to 256 channels, upsampled to 32 x 24 and summed,
one deconvolution to 64 x 48 (stride 4)."""

from torch import nn

from squatpose.models.backbone import FPNFusion, deconv_block, init_head


class ResNet18FPN(nn.Module):
    def __init__(self, pretrained: bool = False, channels: int = 256):
        super().__init__()
        self.fuse = FPNFusion(pretrained, channels)
        self.deconv = deconv_block(channels, channels)
        self.out_channels = channels
        init_head(self.deconv)

    def forward(self, x):
        return self.deconv(self.fuse(x))
