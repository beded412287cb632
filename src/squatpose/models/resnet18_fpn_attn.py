"""ResNet18-FPN with a self-attention block over the fused 32 x 24 features (the report's
first future-work item): every position attends to every other, so an occluded joint can be
placed from the rest of the leg."""

import torch
import torch.nn.functional as F
from torch import nn

from squatpose.models.backbone import FPNFusion, deconv_block, init_head


# The learned position embedding's grid: the fused stride-8 features of a 192 x 256 crop (rows,
# columns); other crop sizes interpolate it. Written here, not read from config.py's crop default:
# the weights' shape must change only with this file (whose hash retrains the row).
POSITION_GRID = (256 // 8, 192 // 8)


class SelfAttention2d(nn.Module):
    """Pre-norm transformer block over the H*W positions of a feature map, with learned
    positions (made for height x width, interpolated for other input sizes)."""

    def __init__(self, channels: int, height: int, width: int, heads: int = 8):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, channels, height, width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(), nn.Linear(2 * channels, channels))

    def forward(self, x):
        b, c, h, w = x.shape
        pos = self.pos if self.pos.shape[-2:] == (h, w) else F.interpolate(
            self.pos, size=(h, w), mode="bilinear", align_corners=False)
        t = (x + pos).flatten(2).transpose(1, 2)  # (B, H*W, C)
        q = self.norm1(t)
        t = t + self.attn(q, q, q, need_weights=False)[0]
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, c, h, w)


class ResNet18FPNAttention(nn.Module):
    def __init__(self, pretrained: bool = False, channels: int = 256):
        super().__init__()
        self.fuse = FPNFusion(pretrained, channels)
        self.attention = SelfAttention2d(channels, *POSITION_GRID)
        self.deconv = deconv_block(channels, channels)
        self.out_channels = channels
        init_head(self.deconv)

    def forward(self, x):
        return self.deconv(self.attention(self.fuse(x)))
