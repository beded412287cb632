"""How sure the model is: joint errors calibrated against confidence, propagated to the angles.

Calibration (on held-out persons with known joints, e.g. LSPET val; scripts/train_shipped_model.py):
every labeled joint's error vector (prediction - truth, in crop pixels) is kept, grouped by joint
type (hip, knee, ankle) and by confidence (`BINS` quantile bins per type): how far off the model is
depends mostly on both. The groups are stored in the checkpoint's meta as plain lists. The held-out
persons are seen as stored and, `REFRAMED_DRAWS` times more, framed as the analysis meets people:
a box off in size and place (a hand-drawn `--box`, the box follower), legs-only framing (a zoom on
the legs, a frame cutting the thighs). Calibrating on the stored crops alone (boxes made from the
joints) gave a +- that held too few of the errors on other data.

Propagation (squatpose analyze): each frame's joints are moved by error vectors drawn from the
group of their type and confidence (scaled from crop to image pixels), the angles measured on each
of `DRAWS` draws; a frame's uncertainty of an angle is the half-width of the central `COVERAGE` of
its draws (+-deg). The draws are those real errors, gross ones (a knee on the wrong leg) included,
so the interval is as heavy-tailed as the model's mistakes.
"""

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from squatpose.augment import augment_batch
from squatpose.codec import Codec, codec_from_meta, in_crop_keypoints
from squatpose.config import AugmentConfig
from squatpose.dataset import ShardDataset, crops_to_tensor
from squatpose.joints import NAMES
from squatpose.subsets import subset_path

GROUPS = ("hip", "knee", "ankle")
GROUP_OF = tuple(GROUPS.index(n.split("_")[1]) for n in NAMES)  # joint index -> group index
BINS = 5  # confidence bins per joint type (quantiles of the calibration set)
KEEP = 400  # error vectors kept per bin (a seeded sample)
DRAWS = 200
COVERAGE = 0.9
REFRAMED_DRAWS = 2  # reframed copies of each held-out person, beside the stored crop
# the framings the analysis meets: box size off (sd 0.25, as in the shipped model's fine-tuning),
# its centre off (sd 5 % of the crop), a zoom on the legs, the frame's top edge cutting the thighs;
# upright (no rotation, no flip)
REFRAMING = AugmentConfig(scale=0.25, rotation=0.0, rotation_prob=0.0, flip_prob=0.0, half_body_prob=0.3,
                          top_cut_prob=0.3, shift=0.05)


@dataclass(frozen=True)
class Calibration:
    edges: list[list[float]]  # per group: BINS + 1 confidence edges (first -inf, last +inf)
    errors: list[list[np.ndarray]]  # per group, per bin: (n, 2) error vectors in crop pixels

    def to_meta(self, method: dict | None = None) -> dict:
        """Plain types for a checkpoint's meta (loaded with weights_only=True); `method`: how the
        errors were measured (kept for the record, e.g. `calibrate_on`'s reframing)."""
        meta = {"unit": "crop pixels", "groups": list(GROUPS), "edges": self.edges,
                "errors": [[np.round(e, 2).tolist() for e in g] for g in self.errors]}
        return meta | {"method": method} if method else meta

    @classmethod
    def from_meta(cls, meta: dict | None) -> "Calibration | None":
        if not meta:
            return None
        return cls(meta["edges"], [[np.asarray(e, np.float64).reshape(-1, 2) for e in g] for g in meta["errors"]])

    def bin_of(self, confidence: np.ndarray, group: int) -> np.ndarray:
        """Bin index (0..BINS-1) of each confidence for joints of `group`."""
        inner = np.asarray(self.edges[group][1:-1])
        return np.searchsorted(inner, confidence, side="right")

    def radius(self, confidence: np.ndarray, joint: int, q: float = COVERAGE) -> np.ndarray:
        """The `q` quantile of the error length (crop px) of joint `joint` at each confidence."""
        g = GROUP_OF[joint]
        per_bin = np.array([np.quantile(np.linalg.norm(e, axis=1), q) for e in self.errors[g]])
        return per_bin[self.bin_of(np.asarray(confidence), g)]

    def covers(self, errors: np.ndarray, confidence: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """Whether each error vector (M, 2) is within the radius of its joint (M,) at its confidence (M,)."""
        radius = np.empty(len(errors))
        for j in np.unique(joint):
            radius[joint == j] = self.radius(confidence[joint == j], int(j))
        return np.linalg.norm(errors, axis=1) <= radius


def fit(errors: np.ndarray, confidence: np.ndarray, joint: np.ndarray, seed: int = 0) -> Calibration:
    """Calibration from error vectors (M, 2) in crop pixels of joints `joint` (M,) at `confidence` (M,)."""
    rng = np.random.default_rng(seed)
    edges, kept = [], []
    for g in range(len(GROUPS)):
        mine = np.isin(joint, [j for j, gg in enumerate(GROUP_OF) if gg == g])
        if mine.sum() < BINS * 10:
            raise ValueError(f"calibration: only {mine.sum()} {GROUPS[g]} joints; need at least {BINS * 10}")
        inner = np.quantile(confidence[mine], np.linspace(0, 1, BINS + 1)[1:-1])
        edges.append([-np.inf, *inner.tolist(), np.inf])
        which = np.searchsorted(inner, confidence[mine], side="right")
        group = []
        for b in range(BINS):
            e = errors[mine][which == b]
            group.append(e[rng.permutation(len(e))[:KEEP]] if len(e) > KEEP else e)
        kept.append(group)
    return Calibration(edges, kept)


def draw_errors(confidence: np.ndarray, calibration: Calibration, draws: int = DRAWS,
                seed: int = 0) -> np.ndarray:
    """Error vectors (draws, T, K, 2) in crop pixels for joints of confidence (T, K), each drawn
    from the calibration errors of its joint type and confidence bin."""
    rng = np.random.default_rng(seed)
    t, k = confidence.shape
    out = np.zeros((draws, t, k, 2))
    for j in range(k):
        g = GROUP_OF[j]
        bins = calibration.bin_of(np.nan_to_num(confidence[:, j], nan=-1.0), g)
        for b in np.unique(bins):
            frames = np.flatnonzero(bins == b)
            pool = calibration.errors[g][b]
            if len(pool) == 0:
                out[:, frames, j] = np.nan
                continue
            out[:, frames, j] = pool[rng.integers(0, len(pool), size=(draws, len(frames)))]
    return out


def angle_uncertainty(measure, xy: np.ndarray, confidence: np.ndarray, crop_scale: np.ndarray,
                      calibration: Calibration | None, columns: list[str], draws: int = DRAWS) -> dict[str, np.ndarray]:
    """Half-width (T,) of the central COVERAGE of each of `columns` of `measure(xy)` (a DataFrame
    of per-frame measures, e.g. kinematics.measures) over joints `xy` (T, K, 2) image px moved by
    drawn errors; `crop_scale` (T,) image px per crop px. All NaN without a calibration."""
    n = len(xy)
    if calibration is None or n == 0:
        return {c: np.full(n, np.nan) for c in columns}
    errors = draw_errors(confidence, calibration, draws) * np.asarray(crop_scale)[None, :, None, None]
    samples = {c: np.empty((draws, n)) for c in columns}
    for d in range(draws):
        frame = measure(xy + errors[d])
        for c in columns:
            samples[c][d] = frame[c].to_numpy()
    lo, hi = (1 - COVERAGE) / 2 * 100, (1 + COVERAGE) / 2 * 100
    out = {}
    for c in columns:
        with warnings.catch_warnings():  # frames where every draw is NaN: NaN, as meant
            warnings.simplefilter("ignore", RuntimeWarning)
            spread = (np.nanpercentile(samples[c], hi, axis=0) - np.nanpercentile(samples[c], lo, axis=0)) / 2
        known = np.isfinite(samples[c]).mean(axis=0) >= 0.5  # most draws give a value
        out[c] = np.where(known, spread, np.nan)
    return out


def framed_errors(model: torch.nn.Module, codec: Codec, ds: ShardDataset, reframings: int, stored: bool = True,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Error vectors (M, 2) in crop pixels, confidence (M,) and joint index (M,) of every joint that
    `model` (decoded by `codec`) should see in the persons of `ds`: as stored (if `stored`) and
    `reframings` times reframed (`REFRAMING`, by the training augmentation's code, drawn from
    `seed`). A joint counts where the codec would supervise it (labeled, on its grid)."""
    generator = torch.Generator().manual_seed(seed)
    errors, confidence, joint = [], [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in DataLoader(ds, batch_size=64, shuffle=False):
                images, kp_crop, in_crop = crops_to_tensor(batch["image"]), batch["kp_crop"], batch["in_crop"]
                framings = [(images, in_crop_keypoints(kp_crop, in_crop))] if stored else []
                framings += [augment_batch(images, kp_crop, in_crop, REFRAMING, codec, generator)
                             for _ in range(reframings)]
                for crops, kp in framings:
                    pred, conf = codec.decode(model(crops).float())
                    seen = codec.encode(kp)[1] > 0
                    errors.append((pred - kp[..., :2])[seen].numpy())
                    confidence.append(conf[seen].numpy())
                    joint.append(torch.arange(kp.shape[1]).expand(seen.shape)[seen].numpy())
    finally:
        model.train(was_training)
    return np.concatenate(errors), np.concatenate(confidence), np.concatenate(joint)


def calibrate_on(model: torch.nn.Module, meta: dict, shards_dir: str | Path, subsets_dir: str | Path,
                 subset: str = "full") -> dict:
    """Calibration (as meta) of `model` on the persons of `subsets_dir`'s val `subset` in
    `shards_dir`: each as stored and `REFRAMED_DRAWS` times reframed."""
    ds = ShardDataset.from_subset(shards_dir, subset_path(subsets_dir, "val", subset))
    method = {"persons": len(ds), "reframed_draws": REFRAMED_DRAWS, "reframing": asdict(REFRAMING)}
    return fit(*framed_errors(model, codec_from_meta(meta), ds, REFRAMED_DRAWS)).to_meta(method)
