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


def kl_discrete_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, beta: float = 10.0) -> torch.Tensor:
    """SimCC's loss over one axis: KL(softmax(beta * target) || softmax(beta * logits)) summed over
    the bins (N, K, B), times the joint's weight (N, K), mean over joints and batch (RTMPose's
    KLDiscretLoss with label_softmax)."""
    log_p = torch.log_softmax(logits.float() * beta, dim=-1)
    q = torch.softmax(target.float() * beta, dim=-1)
    per_joint = (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(-1)
    return (per_joint * weight).mean()
