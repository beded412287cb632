"""ResNet18-FPN with a self-attention block over the fused 32 x 24 features (the report's
first future-work item): every position attends to every other, so an occluded joint can be
placed from the rest of the leg."""

import torch
from torch import nn

from squatpose.models.resnet18_fpn import ResNet18FPN


class SelfAttention2d(nn.Module):
    """Pre-norm transformer block over the H*W positions of a feature map, learned positions."""

    def __init__(self, channels: int, height: int, width: int, heads: int = 8):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, height * width, channels))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(), nn.Linear(2 * channels, channels))

    def forward(self, x):
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2) + self.pos  # (B, H*W, C)
        q = self.norm1(t)
        t = t + self.attn(q, q, q, need_weights=False)[0]
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, c, h, w)


class ResNet18FPNAttention(ResNet18FPN):
    def __init__(self, pretrained: bool = False, num_joints: int = 6, channels: int = 256):
        super().__init__(pretrained, num_joints, channels)
        self.attention = SelfAttention2d(channels, 32, 24)

    def forward(self, x):
        return self.head(self.deconv(self.attention(self.fuse(x))))
