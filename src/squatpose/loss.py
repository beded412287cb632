"""The training loss."""

import torch
from torch import nn


class JointsMSELoss(nn.Module):
    """Per-joint MSE over the heatmap pixels, times the joint's target weight, mean over the
    joints and over the batch (the report's definition; SimpleBaseline's without its 0.5)."""

    def __init__(self, use_target_weight: bool = True):
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
        per_joint = ((pred.float() - target.float()) ** 2).mean(dim=(2, 3))  # (B, K)
        if self.use_target_weight:
            per_joint = per_joint * target_weight
        return per_joint.mean()
