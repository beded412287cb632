"""The heads: stride-4 features -> what the codec decodes (codec.py), one head per codec.

- heatmap, stride 4: a 1x1 conv to one heatmap per joint (SimpleBaseline);
- heatmap, stride 2: one more 4x4 stride-2 deconvolution first (finer heatmaps);
- simcc: a 7x7 conv to one map per joint, flattened, a hidden layer (256, LayerNorm, GELU) and
  two linear classifiers over the x and y bins (RTMPose's head without its gated attention).
"""

import torch
from torch import nn

from squatpose.codec import Codec, SimCCCodec
from squatpose.models.backbone import deconv_block, init_head

FEATURE_STRIDE = 4  # every trunk's output: crop pixels per feature cell


class HeatmapHead(nn.Sequential):
    def __init__(self, channels: int, num_joints: int, stride: int):
        if stride not in (FEATURE_STRIDE, FEATURE_STRIDE // 2):
            raise ValueError(f"heatmap stride {stride}: expected {FEATURE_STRIDE} or {FEATURE_STRIDE // 2}")
        up = [] if stride == FEATURE_STRIDE else [deconv_block(channels, min(channels, 128))]
        super().__init__(*up, nn.Conv2d(min(channels, 128) if up else channels, num_joints, 1))
        init_head(self)


class SimCCHead(nn.Module):
    def __init__(self, channels: int, num_joints: int, feature_hw: tuple[int, int], bins_x: int, bins_y: int,
                 hidden: int = 256):
        super().__init__()
        self.conv = nn.Conv2d(channels, num_joints, 7, padding=3)
        self.mlp = nn.Sequential(nn.Linear(feature_hw[0] * feature_hw[1], hidden), nn.LayerNorm(hidden), nn.GELU())
        self.x = nn.Linear(hidden, bins_x)
        self.y = nn.Linear(hidden, bins_y)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        t = self.mlp(self.conv(features).flatten(2))  # (B, K, hidden)
        return torch.cat([self.x(t), self.y(t)], -1)  # (B, K, bins_x + bins_y)


def make_head(channels: int, codec: Codec, num_joints: int) -> nn.Module:
    """The head that turns `channels` stride-4 features into `codec`'s outputs."""
    if isinstance(codec, SimCCCodec):
        hw = (codec.crop_h // FEATURE_STRIDE, codec.crop_w // FEATURE_STRIDE)
        return SimCCHead(channels, num_joints, hw, codec.bins_x, codec.bins_y)
    return HeatmapHead(channels, num_joints, codec.stride)
