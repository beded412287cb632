"""The dilated CNN wider and deeper: 96 channels, six residual blocks with dilation 1, 2, 4, 8, 2, 1
(a receptive field of the whole 96 x 128 crop at stride 4)."""

from squatpose.models.dilated import DilatedNet


class DilatedWide(DilatedNet):
    def __init__(self, pretrained: bool = False):
        super().__init__(pretrained, channels=96, dilations=(1, 2, 4, 8, 2, 1))
