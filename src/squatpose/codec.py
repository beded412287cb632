"""The codecs: keypoints -> training targets, and model outputs -> keypoints, each in one object.

Encode and decode live together so that training, evaluation and squat analysis always agree
on the grid. Two codecs, chosen by params.yaml `codec.kind` (the model's head follows it):

- `HeatmapCodec` (SimpleBaseline): one 2-D Gaussian heatmap per joint at 1/`stride` of the crop.
  A joint at crop pixel (x, y) sits at heatmap position (x / stride, y / stride), the target a
  Gaussian of `sigma` cells centred there (peak <= 1). Decoding takes the argmax, then refines it:
  `quarter` moves it a quarter cell toward the higher neighbour (the SimpleBaseline convention),
  `dark` takes a Newton step on the log of the blurred heatmap (DARK, Zhang et al. 2020), which
  recovers the sub-cell position of a Gaussian-shaped peak exactly. Confidence: the peak value.
- `SimCCCodec` (SimCC / RTMPose): per joint, two 1-D distributions over `split` bins per crop
  pixel, one for x and one for y; the model outputs their logits side by side, (N, K, Wb + Hb).
  Targets are 1-D Gaussians of `sigma` bins; the loss is the KL divergence of the softmaxed
  outputs to the softmaxed targets (RTMPose's KLDiscretLoss, beta 10). Decoding: the argmax bin
  / split; confidence: how sharp the softmaxed peak is next to a target's (1: as sure as the
  targets), the smaller of x and y.

Every codec: `encode(kp (N, K, 3)) -> (targets, weights (N, K))`, `decode(outputs) -> (kp (N, K, 2),
confidence (N, K))`, `loss(outputs, targets, weights)`, `flip_back(outputs of mirrored crops)`,
`output_shape` (per sample) and `to_heatmaps(outputs)` (2-D pictures for figures). Joints that are
unlabeled (v = 0), or whose nearest output cell lies off the grid, get weight 0.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from squatpose.config import CodecConfig, CropConfig
from squatpose.joints import FLIP_INDEX
from squatpose.loss import JointsMSELoss, kl_discrete_loss


DARK_MARGIN = 3  # cells from the border within which DARK falls back to the quarter shift


def _gaussian_1d(positions: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """exp(-(i - p)^2 / 2 sigma^2) for i in 0..size-1: (..., size) for positions (...)."""
    grid = torch.arange(size, dtype=torch.float32, device=positions.device)
    return torch.exp(-((grid - positions[..., None]) ** 2) / (2 * sigma**2))


def _shift_last(x: torch.Tensor, offset: float) -> torch.Tensor:
    """out[..., j] = x[..., j - offset], zero-filled, linear between whole cells."""
    whole = int(np.floor(offset))
    frac = offset - whole

    def shift(d: int) -> torch.Tensor:
        if d == 0:
            return x
        out = torch.zeros_like(x)
        if d > 0:
            out[..., d:] = x[..., :-d]
        else:
            out[..., :d] = x[..., -d:]
        return out

    return (1 - frac) * shift(whole) + frac * shift(whole + 1) if frac else shift(whole)


def _as_tensor(x) -> tuple[torch.Tensor, bool]:
    return torch.as_tensor(x).float(), isinstance(x, np.ndarray)


@dataclass(frozen=True)
class HeatmapCodec:
    crop_w: int = CropConfig.width  # defaults: config.py's, the one place they are written
    crop_h: int = CropConfig.height
    stride: int = CodecConfig.stride
    sigma: float = CodecConfig.sigma
    decoding: str = CodecConfig.decoding

    @property
    def heatmap_w(self) -> int:
        return self.crop_w // self.stride

    @property
    def heatmap_h(self) -> int:
        return self.crop_h // self.stride

    @property
    def output_shape(self) -> tuple[int, int]:
        """Per joint: (heatmap height, width)."""
        return self.heatmap_h, self.heatmap_w

    def encode(self, kp_crop: torch.Tensor | np.ndarray) -> tuple:
        """Targets for keypoints (N, K, 3) of (x, y, v) in crop pixels.

        Returns heatmaps (N, K, H, W) float32 in [0, 1] and weights (N, K) float32 in {0, 1},
        as torch tensors on the input's device, or as numpy arrays for numpy input.
        """
        kp, as_numpy = _as_tensor(kp_crop)
        mu = kp[..., :2] / self.stride  # (N, K, 2) in heatmap pixels
        on_grid = ((mu[..., 0] >= -0.5) & (mu[..., 0] < self.heatmap_w - 0.5)
                   & (mu[..., 1] >= -0.5) & (mu[..., 1] < self.heatmap_h - 0.5))
        weight = ((kp[..., 2] > 0) & on_grid).float()
        gx = _gaussian_1d(mu[..., 0], self.heatmap_w, self.sigma)  # (N, K, W)
        gy = _gaussian_1d(mu[..., 1], self.heatmap_h, self.sigma)  # (N, K, H)
        heatmaps = gy[..., :, None] * gx[..., None, :] * weight[..., None, None]
        if as_numpy:
            return heatmaps.numpy(), weight.numpy()
        return heatmaps, weight

    def decode(self, heatmaps: torch.Tensor | np.ndarray, decoding: str | None = None) -> tuple:
        """Keypoints (N, K, 2) in crop pixels and confidence (N, K) = the heatmap peak.

        `decoding` (default: the codec's): `argmax`; `quarter`: the argmax moved a quarter cell
        toward the higher neighbour in x and in y; `dark`: the argmax refined by one Newton step on
        the log of the heatmap blurred by the target's Gaussian (at most half a cell: the argmax is
        the nearest cell; `quarter` within DARK_MARGIN cells of the border, where the blur is distorted).
        """
        hm, as_numpy = _as_tensor(heatmaps)
        decoding = decoding or self.decoding
        n, k, h, w = hm.shape
        flat = hm.reshape(n, k, h * w)
        conf, idx = flat.max(dim=-1)
        x, y = (idx % w).float(), torch.div(idx, w, rounding_mode="floor").float()
        if decoding not in ("argmax", "quarter", "dark"):
            raise ValueError(f"unknown decoding {decoding!r}")
        xi, yi = x.long(), y.long()
        if decoding != "argmax":
            def at(dx: int, dy: int) -> torch.Tensor:
                xx, yy = (xi + dx).clamp(0, w - 1), (yi + dy).clamp(0, h - 1)
                return flat.gather(-1, (yy * w + xx)[..., None])[..., 0]
            qx = 0.25 * torch.sign(at(1, 0) - at(-1, 0)) * ((xi > 0) & (xi < w - 1))
            qy = 0.25 * torch.sign(at(0, 1) - at(0, -1)) * ((yi > 0) & (yi < h - 1))
        if decoding == "dark":  # near the border the blur is distorted: quarter there
            dx, dy = self._dark_offsets(hm, xi, yi)
            m = DARK_MARGIN
            inner = (xi >= m) & (xi <= w - 1 - m) & (yi >= m) & (yi <= h - 1 - m)
            qx, qy = torch.where(inner, dx, qx), torch.where(inner, dy, qy)
        if decoding != "argmax":
            x, y = x + qx, y + qy
        kp = torch.stack([x, y], dim=-1) * self.stride
        if as_numpy:
            return kp.numpy(), conf.numpy()
        return kp, conf

    def _dark_offsets(self, hm: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> tuple:
        """DARK's sub-cell offsets (N, K) at integer peaks: -H^-1 g of log(blurred heatmap), by
        central differences; 0 where the peak is not a proper maximum, clamped to +-0.5 cell. The
        blur (the target's Gaussian, radius 2.5 sigma) pads with zeros, as mmpose's does."""
        n, k, h, w = hm.shape
        radius = max(1, math.ceil(2.5 * self.sigma))
        g = _gaussian_1d(torch.tensor(float(radius)), 2 * radius + 1, self.sigma)
        g = (g / g.sum()).view(1, 1, -1)
        x = F.pad(hm.reshape(n * k, 1, h, w), (radius, radius, radius, radius))
        x = F.conv2d(x, g.view(1, 1, 1, -1))
        x = F.conv2d(x, g.view(1, 1, -1, 1)).reshape(n, k, h, w)
        logs = F.pad(x.clamp_min(1e-10).log().reshape(n * k, 1, h, w), (2, 2, 2, 2), mode="replicate")
        logs = logs.reshape(n, k, (h + 4) * (w + 4))

        def at(dx: int, dy: int) -> torch.Tensor:
            return logs.gather(-1, ((yi + 2 + dy) * (w + 4) + xi + 2 + dx)[..., None])[..., 0]
        c = at(0, 0)
        gx, gy = 0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))
        dxx = 0.25 * (at(2, 0) - 2 * c + at(-2, 0))
        dyy = 0.25 * (at(0, 2) - 2 * c + at(0, -2))
        dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
        det = dxx * dyy - dxy**2
        ok = (dxx < 0) & (dyy < 0) & (det > 1e-12)
        safe = torch.where(ok, det, torch.ones_like(det))
        ox = -(dyy * gx - dxy * gy) / safe
        oy = -(dxx * gy - dxy * gx) / safe
        zero = torch.zeros_like(ox)
        return torch.where(ok, ox, zero).clamp(-0.5, 0.5), torch.where(ok, oy, zero).clamp(-0.5, 0.5)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Per-joint heatmap MSE times the joint's weight (loss.JointsMSELoss)."""
        return JointsMSELoss()(outputs, targets, weights)

    def flip_back(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """Heatmaps (N, 6, h, w) predicted for horizontally flipped crops, in the unflipped frame.

        Mirrors them, swaps left and right joints, and shifts them right by the sub-pixel offset
        between mirroring the crop (x -> crop_w - 1 - x) and mirroring the grid (j -> w - 1 - j):
        (crop_w - 1) / stride - (w - 1) = 0.75 heatmap pixels for 192 -> 48, by linear interpolation.
        """
        hm = torch.flip(heatmaps, dims=[-1])[:, list(FLIP_INDEX)]
        return _shift_last(hm, (self.crop_w - 1) / self.stride - (self.heatmap_w - 1))

    def to_heatmaps(self, outputs: np.ndarray) -> np.ndarray:
        """The outputs as 2-D maps per joint, for figures: the heatmaps themselves."""
        return np.asarray(outputs)


@dataclass(frozen=True)
class SimCCCodec:
    crop_w: int = CropConfig.width
    crop_h: int = CropConfig.height
    split: float = CodecConfig.split
    sigma: float = CodecConfig.sigma
    beta: float = 10.0  # softmax temperature of the loss (RTMPose)

    @property
    def stride(self) -> float:
        """Crop pixels per bin."""
        return 1 / self.split

    @property
    def bins_x(self) -> int:
        return round(self.crop_w * self.split)

    @property
    def bins_y(self) -> int:
        return round(self.crop_h * self.split)

    @property
    def output_shape(self) -> tuple[int]:
        """Per joint: the x logits followed by the y logits."""
        return (self.bins_x + self.bins_y,)

    def encode(self, kp_crop: torch.Tensor | np.ndarray) -> tuple:
        """Targets (N, K, Wb + Hb): 1-D Gaussians over x bins then y bins (peak <= 1), and weights (N, K)."""
        kp, as_numpy = _as_tensor(kp_crop)
        mu = kp[..., :2] * self.split
        on_grid = ((mu[..., 0] >= -0.5) & (mu[..., 0] < self.bins_x - 0.5)
                   & (mu[..., 1] >= -0.5) & (mu[..., 1] < self.bins_y - 0.5))
        weight = ((kp[..., 2] > 0) & on_grid).float()
        target = torch.cat([_gaussian_1d(mu[..., 0], self.bins_x, self.sigma),
                            _gaussian_1d(mu[..., 1], self.bins_y, self.sigma)], -1) * weight[..., None]
        if as_numpy:
            return target.numpy(), weight.numpy()
        return target, weight

    def split_xy(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs[..., :self.bins_x], outputs[..., self.bins_x:]

    def decode(self, outputs: torch.Tensor | np.ndarray, decoding: str | None = None) -> tuple:
        """Keypoints (N, K, 2) in crop pixels (argmax bin / split) and confidence (N, K): per axis,
        the peak of softmax(beta * outputs) over the peak a training target gives (1: as sharp as
        the targets; the softmax makes it independent of the logits' offset), the smaller of x and
        y, clipped to [0, 1]. `decoding` is accepted for a common call."""
        out, as_numpy = _as_tensor(outputs)
        vx, vy = self.split_xy(out)
        ix, iy = vx.argmax(-1), vy.argmax(-1)
        cx = torch.softmax(vx * self.beta, -1).amax(-1) / self._target_peak(self.bins_x)
        cy = torch.softmax(vy * self.beta, -1).amax(-1) / self._target_peak(self.bins_y)
        kp = torch.stack([ix.float(), iy.float()], -1) / self.split
        conf = torch.minimum(cx, cy).clamp(0, 1)
        if as_numpy:
            return kp.numpy(), conf.numpy()
        return kp, conf

    def _target_peak(self, bins: int) -> float:
        """The peak of softmax(beta * target) for a target centred on the middle bin."""
        target = _gaussian_1d(torch.tensor(bins / 2.0), bins, self.sigma)
        return float(torch.softmax(target * self.beta, -1).max())

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """KL divergence of softmax(beta * outputs) to softmax(beta * targets), x and y, per joint."""
        px, py = self.split_xy(outputs.float())
        tx, ty = self.split_xy(targets.float())
        return (kl_discrete_loss(px, tx, weights, self.beta) + kl_discrete_loss(py, ty, weights, self.beta)) / 2

    def flip_back(self, outputs: torch.Tensor) -> torch.Tensor:
        """Outputs for mirrored crops in the unflipped frame: x bins reversed and shifted by
        (crop_w - 1) * split - (Wb - 1) = 1 - split bins, left and right swapped."""
        vx, vy = self.split_xy(outputs[:, list(FLIP_INDEX)])
        vx = _shift_last(torch.flip(vx, dims=[-1]), (self.crop_w - 1) * self.split - (self.bins_x - 1))
        return torch.cat([vx, vy], -1)

    def to_heatmaps(self, outputs: np.ndarray) -> np.ndarray:
        """2-D pictures for figures: the outer product of the (clipped) y and x outputs."""
        vx, vy = self.split_xy(torch.as_tensor(np.asarray(outputs)).float().clamp_min(0))
        return (vy[..., :, None] * vx[..., None, :]).numpy()


Codec = HeatmapCodec | SimCCCodec


def make_codec(cfg: CodecConfig, crop: CropConfig) -> Codec:
    """The codec of params.yaml's `codec` section for crops of `crop`'s size."""
    if cfg.kind == "simcc":
        return SimCCCodec(crop.width, crop.height, cfg.split, cfg.sigma)
    return HeatmapCodec(crop.width, crop.height, cfg.stride, cfg.sigma, cfg.decoding)


def codec_from_meta(meta: dict, decoding: str | None = None) -> Codec:
    """The codec a checkpoint was trained with (its meta's `crop` and `codec`), decoding with
    `decoding` instead of the training-time setting if given."""
    cfg = CodecConfig(**meta["codec"])
    return make_codec(dataclasses.replace(cfg, decoding=decoding) if decoding else cfg, CropConfig(**meta["crop"]))


def in_crop_keypoints(kp_crop: torch.Tensor, in_crop: torch.Tensor) -> torch.Tensor:
    """Keypoints (N, K, 3) with v set to 0 where the stored crop did not show the joint
    (`in_crop` 0: unlabeled, or outside the crop): those are never supervised."""
    kp = kp_crop.clone().float()
    kp[..., 2] = kp[..., 2] * (in_crop.to(kp.device) > 0).float()
    return kp
