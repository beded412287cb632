"""SimpleBaseline: ResNet18 to 512 x 8 x 6, three deconvolutions to 256 x 64 x 48, 1x1 conv to heatmaps."""

from torch import nn

from squatpose.models.backbone import ResNetStages, deconv_block, init_head


class ResNet18Deconv(nn.Module):
    def __init__(self, pretrained: bool = False, num_joints: int = 6, channels: int = 256):
        super().__init__()
        self.backbone = ResNetStages(pretrained)
        self.deconv = nn.Sequential(deconv_block(512, channels), deconv_block(channels, channels),
                                    deconv_block(channels, channels))
        self.head = nn.Conv2d(channels, num_joints, 1)
        init_head(self.deconv)
        init_head(self.head)

    def forward(self, x):
        return self.head(self.deconv(self.backbone(x)[-1]))
