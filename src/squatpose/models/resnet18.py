"""SimpleBaseline's trunk: ResNet18 to 512 x 8 x 6, three deconvolutions to 256 x 64 x 48 (stride 4)."""

from torch import nn

from squatpose.models.backbone import ResNetStages, deconv_block, init_head


class ResNet18Deconv(nn.Module):
    def __init__(self, pretrained: bool = False, channels: int = 256):
        super().__init__()
        self.backbone = ResNetStages(pretrained)
        self.deconv = nn.Sequential(deconv_block(512, channels), deconv_block(channels, channels),
                                    deconv_block(channels, channels))
        self.out_channels = channels
        init_head(self.deconv)

    def forward(self, x):
        return self.deconv(self.backbone(x)[-1])
