"""Augmentation of training batches from the stored crops, on the training device.

Each sample draws one affine matrix A mapping stored-crop pixels to augmented-crop pixels: a random
scale and rotation about the box centre, where the box is the whole crop or, for a half-body
sample, a box around its labeled leg joints (legs-only framing), an optional shift of the box, then
an optional horizontal flip. The crop is resampled through A (bilinear, black outside, like the
stored crops) and the keypoints are mapped by A (left and right swapped on a flip); the training
loop makes the targets from them with the codec's encoder, as for unaugmented batches. No JPEG is
decoded again. Last, an optional top cut blackens the crop above a row between just above the hips
and halfway down the thighs, as a camera frame whose top edge cuts the thighs does (legs-only
video); the hips keep their labels, so the model learns to place them from the thighs.

The flip mirrors about x = (crop_w - stride) / 2, the axis the codec's grid (heatmap cells or
SimCC bins) is symmetric about, so a flipped sample's targets are exactly the mirrored targets
with left and right swapped (a mirror about the crop's own centre would put them 0.75 heatmap
pixels apart at stride 4).
"""

import math

import torch
import torch.nn.functional as F

from squatpose.codec import Codec, in_crop_keypoints
from squatpose.config import AugmentConfig
from squatpose.imaging import MEAN, STD
from squatpose.joints import FLIP_INDEX, NAMES


def draw_affines(kp_crop: torch.Tensor, cfg: AugmentConfig, codec: Codec,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (N, 2, 3) float64 matrices (stored crop -> augmented crop) and (N,) flip flags."""
    kp = kp_crop.detach().to("cpu", torch.float64)
    n, w, h = len(kp), codec.crop_w, codec.crop_h

    def uniform() -> torch.Tensor:
        return torch.rand(n, generator=generator, dtype=torch.float64)

    def normal() -> torch.Tensor:
        return torch.randn(n, generator=generator, dtype=torch.float64)

    scale = (1 + normal() * cfg.scale).clamp(1 - cfg.scale, 1 + cfg.scale)
    angle = (normal() * cfg.rotation).clamp(-2 * cfg.rotation, 2 * cfg.rotation)
    angle = torch.where(uniform() < cfg.rotation_prob, angle, torch.zeros(n, dtype=torch.float64))
    flip = uniform() < cfg.flip_prob
    half = uniform() < cfg.half_body_prob

    center = torch.tensor([w / 2, h / 2], dtype=torch.float64).repeat(n, 1)
    box_w = torch.full((n,), float(w), dtype=torch.float64)
    labeled = (kp[..., 2] > 0) & (kp[..., 0] >= 0) & (kp[..., 0] < w) & (kp[..., 1] >= 0) & (kp[..., 1] < h)
    inf = torch.tensor(math.inf, dtype=torch.float64)
    lo = torch.where(labeled[..., None], kp[..., :2], inf).amin(1)  # box of the labeled leg joints
    hi = torch.where(labeled[..., None], kp[..., :2], -inf).amax(1)
    size = (hi - lo).nan_to_num(0, 0, 0)
    legs_w = torch.maximum(torch.maximum(size[:, 0], size[:, 1] * w / h), torch.tensor(0.25 * w,
                           dtype=torch.float64)) * cfg.half_body_padding  # the crop's aspect, not too small
    zoom_in = half & (labeled.sum(1) >= 2) & (legs_w < w)  # only ever zoom in on the legs
    center = torch.where(zoom_in[:, None], (lo + hi) / 2, center)
    box_w = torch.where(zoom_in, legs_w, box_w)

    zoom = w / (box_w * scale)
    rad = angle * math.pi / 180
    cos, sin = torch.cos(rad) * zoom, torch.sin(rad) * zoom
    a = torch.zeros(n, 3, 3, dtype=torch.float64)
    a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1] = cos, sin, -sin, cos
    a[:, :2, 2] = torch.tensor([w / 2, h / 2], dtype=torch.float64) - (a[:, :2, :2] @ center[..., None])[..., 0]
    a[:, 2, 2] = 1
    if cfg.shift > 0:  # drawn only when on (after the rest), so that runs without it keep their draws
        a[:, :2, 2] += torch.randn(n, 2, generator=generator, dtype=torch.float64) * cfg.shift \
            * torch.tensor([w, h], dtype=torch.float64)
    mirror = torch.tensor([[-1, 0, w - codec.stride], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    a = torch.where(flip[:, None, None], mirror @ a, a)
    return a[:, :2], flip


def transform_keypoints(kp_crop: torch.Tensor, affines: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Keypoints (N, 6, 3) mapped by (N, 2, 3) matrices; left and right swapped where flipped."""
    m = affines.to(kp_crop.device, torch.float32)
    out = kp_crop.clone().float()
    out[..., :2] = kp_crop[..., :2].float() @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]
    swapped = out[:, list(FLIP_INDEX)]
    return torch.where(flip.to(out.device)[:, None, None], swapped, out)


def black_like(images: torch.Tensor) -> torch.Tensor:
    """The normalised value (1, 3, 1, 1) of a black pixel, on `images`' device and dtype."""
    return ((0 - torch.tensor(MEAN)) / torch.tensor(STD)).to(images.device, images.dtype).view(1, 3, 1, 1)


def warp_images(images: torch.Tensor, affines: torch.Tensor) -> torch.Tensor:
    """Normalised images (N, 3, H, W) resampled so that output pixel p shows input pixel A^-1 p.

    Pixel centres are integer coordinates (as in the keypoints); outside the input is black.
    """
    n, _, h, w = images.shape
    full = torch.cat([affines, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=affines.dtype).expand(n, 1, 3)], 1)
    inv = torch.linalg.inv(full)[:, :2].to(images.device, torch.float32)
    ys, xs = torch.meshgrid(torch.arange(h, device=images.device, dtype=torch.float32),
                            torch.arange(w, device=images.device, dtype=torch.float32), indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, h * w, 3)
    src = (pix @ inv.transpose(1, 2)).reshape(n, h, w, 2)
    grid = torch.stack([(2 * src[..., 0] + 1) / w - 1, (2 * src[..., 1] + 1) / h - 1], -1)
    black = black_like(images)
    out = F.grid_sample(images - black, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + black


def cut_tops(images: torch.Tensor, kp: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Normalised images (N, 3, H, W) with, on a share `prob` of the samples whose hips and knees
    are labeled (keypoints `kp` (N, 6, 3) in crop pixels) and upright, every row above a cut black:
    the cut lies at hip_y + t (knee_y - hip_y), t uniform in [-0.2, 0.6] (sides averaged)."""
    n, _, h, _ = images.shape
    device = images.device  # the draws come from the CPU generator; the rest stays on the device (no sync)
    chosen = (torch.rand(n, generator=generator, dtype=torch.float64) < prob).to(device)
    t = (torch.rand(n, generator=generator, dtype=torch.float64) * 0.8 - 0.2).to(device)
    k = kp.detach().to(device, torch.float64)
    hip = k[:, [NAMES.index("left_hip"), NAMES.index("right_hip")]]
    knee = k[:, [NAMES.index("left_knee"), NAMES.index("right_knee")]]

    def mean_y(pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen = (pair[..., 2] > 0).double()
        return (pair[..., 1] * seen).sum(1) / seen.sum(1).clamp(min=1), seen.sum(1) > 0

    (hip_y, has_hip), (knee_y, has_knee) = mean_y(hip), mean_y(knee)
    cut = torch.where(chosen & has_hip & has_knee & (knee_y > hip_y), hip_y + t * (knee_y - hip_y), -math.inf)
    above = torch.arange(h, device=device, dtype=torch.float64)[None, :] < cut[:, None]  # (N, H)
    return torch.where(above[:, None, :, None], black_like(images), images)


def augment_batch(images: torch.Tensor, kp_crop: torch.Tensor, in_crop: torch.Tensor, cfg: AugmentConfig,
                  codec: Codec, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented images and their keypoints (N, 6, 3), on the images' device.

    A joint the stored crop did not show (`in_crop` 0: unlabeled, or outside the crop) gets v = 0
    and stays unsupervised even if a zoom-out or rotation brings its position into view: there
    it is black.
    """
    kp_crop = in_crop_keypoints(kp_crop, in_crop)
    affines, flip = draw_affines(kp_crop, cfg, codec, generator)
    kp = transform_keypoints(kp_crop.to(images.device), affines, flip)
    images = warp_images(images, affines)
    if cfg.top_cut_prob > 0:  # drawn only when on, so that runs without it keep their draws
        images = cut_tops(images, kp, cfg.top_cut_prob, generator)
    return images, kp


def seeded_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of one epoch on one rank: a resumed epoch draws the same augmentations."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 1_009 + rank) % 2**63)
