"""A small dilated CNN that stays at stride 4: a 7x7 stride-2 conv (64 x 128 x 96), max-pooled
to 64 x 48, residual blocks with dilation 1, 2, 4, 1 and a 3x3 conv."""

from torch import nn


def conv_bn(in_ch: int, out_ch: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, k, stride, padding=dilation * (k // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class DilatedBlock(nn.Module):
    """Two 3x3 convolutions with the same dilation and a skip connection."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = conv_bn(channels, channels, 3, dilation=dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(x + self.conv2(self.conv1(x)))


class DilatedNet(nn.Module):
    """`pretrained` is accepted for a common signature: there are no ImageNet weights for it."""

    def __init__(self, pretrained: bool = False, channels: int = 64, dilations: tuple[int, ...] = (1, 2, 4, 1)):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, channels, 7, stride=2), nn.MaxPool2d(3, 2, 1))
        self.blocks = nn.Sequential(*(DilatedBlock(channels, d) for d in dilations))
        self.neck = conv_bn(channels, channels, 3)
        self.out_channels = channels

    def forward(self, x):
        return self.neck(self.blocks(self.stem(x)))
