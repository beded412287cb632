"""The heatmap codec: keypoints -> Gaussian target heatmaps, and heatmaps -> keypoints.

Encode and decode live in one object so that training targets, evaluation and squat
analysis always agree on the grid: a joint at crop pixel (x, y) sits at heatmap position
(x / stride, y / stride), stride = crop size / heatmap size (4 for 192x256 -> 48x64).
The target is a Gaussian of `sigma` heatmap pixels centred at that exact (sub-pixel)
position, peak <= 1; an unlabeled joint, or one whose nearest heatmap cell is off the grid
(x / stride outside [-0.5, w - 0.5), likewise y), gets an all-zero heatmap and weight 0.
"""

from dataclasses import dataclass

import numpy as np
import torch

from squatpose.config import CropConfig, HeatmapConfig
from squatpose.joints import FLIP_INDEX


@dataclass(frozen=True)
class HeatmapCodec:
    crop_w: int = 192
    crop_h: int = 256
    heatmap_w: int = 48
    heatmap_h: int = 64
    sigma: float = 2.0

    @classmethod
    def from_config(cls, crop: CropConfig, heatmap: HeatmapConfig) -> "HeatmapCodec":
        return cls(crop.width, crop.height, heatmap.width, heatmap.height, heatmap.sigma)

    @property
    def stride(self) -> float:
        return self.crop_w / self.heatmap_w

    def encode(self, kp_crop: torch.Tensor | np.ndarray) -> tuple:
        """Targets for keypoints (N, K, 3) of (x, y, v) in crop pixels.

        Returns heatmaps (N, K, H, W) float32 in [0, 1] and weights (N, K) float32 in {0, 1},
        as torch tensors on the input's device, or as numpy arrays for numpy input.
        """
        as_numpy = isinstance(kp_crop, np.ndarray)
        kp = torch.as_tensor(kp_crop, dtype=torch.float32)
        mu = kp[..., :2] / self.stride  # (N, K, 2) in heatmap pixels
        on_grid = ((mu[..., 0] >= -0.5) & (mu[..., 0] < self.heatmap_w - 0.5)
                   & (mu[..., 1] >= -0.5) & (mu[..., 1] < self.heatmap_h - 0.5))
        weight = ((kp[..., 2] > 0) & on_grid).float()
        xs = torch.arange(self.heatmap_w, dtype=torch.float32, device=kp.device)
        ys = torch.arange(self.heatmap_h, dtype=torch.float32, device=kp.device)
        gx = torch.exp(-((xs - mu[..., 0:1]) ** 2) / (2 * self.sigma**2))  # (N, K, W)
        gy = torch.exp(-((ys - mu[..., 1:2]) ** 2) / (2 * self.sigma**2))  # (N, K, H)
        heatmaps = gy[..., :, None] * gx[..., None, :] * weight[..., None, None]
        if as_numpy:
            return heatmaps.numpy(), weight.numpy()
        return heatmaps, weight

    def decode(self, heatmaps: torch.Tensor | np.ndarray, quarter_shift: bool = True) -> tuple:
        """Keypoints (N, K, 2) in crop pixels and confidence (N, K) = the heatmap peak.

        The position is the argmax, moved a quarter heatmap pixel toward the higher
        neighbour in x and in y when `quarter_shift` (the SimpleBaseline convention).
        """
        as_numpy = isinstance(heatmaps, np.ndarray)
        hm = torch.as_tensor(heatmaps).float()
        n, k, h, w = hm.shape
        flat = hm.reshape(n, k, h * w)
        conf, idx = flat.max(dim=-1)
        x, y = (idx % w).float(), torch.div(idx, w, rounding_mode="floor").float()
        if quarter_shift:
            xi, yi = x.long(), y.long()
            def at(dx: int, dy: int) -> torch.Tensor:
                xx, yy = (xi + dx).clamp(0, w - 1), (yi + dy).clamp(0, h - 1)
                return flat.gather(-1, (yy * w + xx)[..., None])[..., 0]
            inner_x = (xi > 0) & (xi < w - 1)
            inner_y = (yi > 0) & (yi < h - 1)
            x = x + 0.25 * torch.sign(at(1, 0) - at(-1, 0)) * inner_x
            y = y + 0.25 * torch.sign(at(0, 1) - at(0, -1)) * inner_y
        kp = torch.stack([x, y], dim=-1) * self.stride
        if as_numpy:
            return kp.numpy(), conf.numpy()
        return kp, conf

    def flip_back(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """Heatmaps (N, 6, h, w) predicted for horizontally flipped crops, in the unflipped frame.

        Mirrors them, swaps left and right joints, and shifts them right by the sub-pixel offset
        between mirroring the crop (x -> crop_w - 1 - x) and mirroring the grid (j -> w - 1 - j):
        (crop_w - 1) / stride - (w - 1) = 0.75 heatmap pixels for 192 -> 48, by linear interpolation.
        """
        hm = torch.flip(heatmaps, dims=[-1])[:, list(FLIP_INDEX)]
        offset = (self.crop_w - 1) / self.stride - (self.heatmap_w - 1)
        whole = int(np.floor(offset))
        frac = offset - whole

        def shift(x: torch.Tensor, d: int) -> torch.Tensor:  # out[..., j] = x[..., j - d], zero-filled
            if d == 0:
                return x
            out = torch.zeros_like(x)
            if d > 0:
                out[..., d:] = x[..., :-d]
            else:
                out[..., :d] = x[..., -d:]
            return out

        return (1 - frac) * shift(hm, whole) + frac * shift(hm, whole + 1)
