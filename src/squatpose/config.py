"""Typed, frozen views of params.yaml, read in one place.

Each section of params.yaml is a dataclass; an unknown or misspelled key is an error that
names the key, so a typo never silently falls back to a default.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from squatpose.errors import ConfigError

SOURCES = ("sample", "coco2017", "coco_dir")
SUBSETS = ("full", "mini", "lower60k")  # made by subsets.make_subsets
SCHEDULES = ("step", "cosine", "constant")
CODECS = ("heatmap", "simcc")
DECODINGS = ("argmax", "quarter", "dark")


@dataclass(frozen=True)
class DataConfig:
    source: str = "sample"  # sample | coco2017 | coco_dir
    sample_dir: str = "data/sample"
    # coco_dir: any COCO-format keypoint dataset (defaults: the sample's own files)
    train_annotations: str = "data/sample/annotations/person_keypoints_train2017.json"
    train_images: str = "data/sample/train2017"
    val_annotations: str = "data/sample/annotations/person_keypoints_val2017.json"
    val_images: str = "data/sample/val2017"


@dataclass(frozen=True)
class DownloadConfig:
    base_url: str = "http://images.cocodataset.org"
    archives_dir: str = "data/downloads"
    keep_archives: bool = False


@dataclass(frozen=True)
class SubsetsConfig:
    seed: int = 0
    mini_size: int = 20000
    lower_min_visibility: int = 1  # 1: labeled (v > 0); 2: visible (v = 2)


@dataclass(frozen=True)
class CropConfig:
    width: int = 192
    height: int = 256
    padding: float = 1.25


@dataclass(frozen=True)
class CodecConfig:
    """How keypoints become training targets and model outputs become keypoints (codec.py)."""

    kind: str = "heatmap"  # heatmap: 2-D Gaussian heatmaps | simcc: 1-D x and y classification (RTMPose)
    stride: int = 4  # heatmap: crop pixels per heatmap cell (4, or 2 for finer heatmaps)
    split: float = 2.0  # simcc: bins per crop pixel
    sigma: float = 2.0  # the target Gaussian's width in output cells (heatmap cells or simcc bins)
    decoding: str = "quarter"  # heatmap: argmax | quarter (toward the higher neighbour) | dark (Taylor step)


@dataclass(frozen=True)
class ShardsConfig:
    subset: str = "full"  # the subset whose persons are cropped; the others select from it
    shard_size: int = 512
    workers: int = 2


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of one architecture (params.yaml `models.<name>`)."""

    epochs: int = 5
    batch_size: int = 16
    lr: float = 1e-3
    pretrained: bool = False
    lr_schedule: str = "step"  # step | cosine | constant
    lr_steps: tuple[int, ...] = (90, 120)  # step: epochs after which lr *= lr_factor
    lr_factor: float = 0.1
    warmup_iters: int = 0  # linear warm-up from lr / 1000 over this many batches
    early_stop: int = 0  # stop after this many epochs without a better val PCK@0.05 (0: never)


@dataclass(frozen=True)
class RowConfig:
    """One row of the results table (params.yaml `rows.<name>`): an architecture on a subset."""

    model: str = "resnet18"
    subset: str = "mini"
    augment: bool = False  # random scale/rotation/flip/half-body on its training batches (section augment)
    init: str = ""  # a squatpose checkpoint whose weights it starts from (fine-tuning); empty: from scratch


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    weight_decay: float = 1e-4
    workers: int = 0  # DataLoader worker processes
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    amp: bool = True  # mixed precision on CUDA
    select_best: bool = True  # model.pt = the epoch with the best val PCK@0.05 (false: the last epoch)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of training batches (rows with `augment: true`), drawn per sample."""

    scale: float = 0.35  # box scale: normal(1, scale) clipped to [1 - scale, 1 + scale] (SimpleBaseline)
    rotation: float = 40.0  # degrees: normal(0, rotation) clipped to +-2 rotation, with rotation_prob
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    half_body_prob: float = 0.3  # crop to the labeled leg joints (at least 2), legs-only framing
    half_body_padding: float = 1.5
    top_cut_prob: float = 0.0  # blacken above a row between the hips and mid-thigh (augment.cut_tops)
    shift: float = 0.0  # box centre offset: normal(0, shift) of the crop's width and height (0: none drawn)


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = 32
    flip_test: bool = False
    figure_persons: int = 16


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str = ""  # empty: sqlite:///<repo>/mlflow.db
    experiment: str = "squatpose"
    log_checkpoint: bool = False  # also store each row's weights in its evaluation run


@dataclass(frozen=True)
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    subsets: SubsetsConfig = field(default_factory=SubsetsConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    model: str = "resnet18"  # the headline model of metrics/metrics.json
    models: dict[str, ModelConfig] = field(default_factory=dict)
    rows: dict[str, RowConfig] = field(default_factory=dict)

    def row(self, name: str) -> RowConfig:
        if name not in self.rows:
            raise ConfigError(f"params.yaml: no row {name!r} under rows (rows: {', '.join(self.rows)})")
        return self.rows[name]


def _section(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """Build dataclass `cls` from a dict, rejecting unknown keys and wrong types."""
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(known)})")
    out = {}
    for name, value in values.items():
        default = known[name].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where}.{name}: expected true/false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}.{name}: expected a number, got {value!r}")
            value = type(default)(value)
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                      for v in value):
                raise ConfigError(f"{where}.{name}: expected a list of integers, got {value!r}")
            value = tuple(value)
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{where}.{name}: expected a string, got {value!r}")
        out[name] = value
    return cls(**out)


def _named(cls: type, values: Any, where: str) -> dict[str, Any]:
    """A mapping of name -> dataclass `cls` (params.yaml `models` and `rows`)."""
    if not isinstance(values or {}, dict):
        raise ConfigError(f"{where}: expected a mapping of names")
    return {str(k): _section(cls, v, f"{where}.{k}") for k, v in (values or {}).items()}


def params_from_dict(raw: dict[str, Any], where: str = "params.yaml") -> Params:
    """Params from an already-parsed params.yaml; unknown top-level keys are errors."""
    known = {f.name for f in dataclasses.fields(Params)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown section '{unknown[0]}' (known: {', '.join(sorted(known))})")
    built: dict[str, Any] = {
        f.name: _section(f.default_factory().__class__, raw.get(f.name), f"{where}: {f.name}")
        for f in dataclasses.fields(Params) if f.name not in ("model", "models", "rows")
    }
    built["models"] = _named(ModelConfig, raw.get("models"), f"{where}: models")
    built["rows"] = _named(RowConfig, raw.get("rows"), f"{where}: rows")
    built["model"] = str(raw.get("model", "resnet18"))
    params = Params(**built)
    for name, row in params.rows.items():
        if row.model not in params.models:
            raise ConfigError(f"{where}: rows.{name}.model is {row.model!r}, which has no entry under models")
        if row.subset not in SUBSETS:
            raise ConfigError(f"{where}: rows.{name}.subset is {row.subset!r}; expected one of {', '.join(SUBSETS)}")
    if params.rows and not any(r.model == params.model for r in params.rows.values()):
        raise ConfigError(f"{where}: model is {params.model!r}, but no row trains it "
                          f"(rows train: {', '.join(sorted({r.model for r in params.rows.values()}))})")
    if params.data.source not in SOURCES:
        raise ConfigError(
            f"{where}: data.source is {params.data.source!r}; expected one of {', '.join(SOURCES)}"
        )
    checks = [
        (params.shards.shard_size >= 1, "shards.shard_size must be at least 1"),
        (params.shards.workers >= 1, "shards.workers must be at least 1"),
        (params.shards.subset in SUBSETS, f"shards.subset must be one of {', '.join(SUBSETS)}"),
        (params.subsets.mini_size >= 0, "subsets.mini_size must not be negative"),
        (params.codec.sigma > 0, "codec.sigma must be positive"),
        (params.crop.padding > 0, "crop.padding must be positive"),
        (min(params.crop.width, params.crop.height) > 0, "crop sizes must be positive"),
        (params.codec.kind in CODECS, f"codec.kind must be one of {', '.join(CODECS)}"),
        (params.codec.decoding in DECODINGS, f"codec.decoding must be one of {', '.join(DECODINGS)}"),
        (params.codec.stride in (2, 4), "codec.stride must be 4 (the models' feature stride) or 2"),
        (params.codec.split > 0 and (params.crop.width * params.codec.split).is_integer()
         and (params.crop.height * params.codec.split).is_integer(),
         "codec.split must be positive and give a whole number of bins for the crop's width and height"),
        (params.evaluate.batch_size >= 1, "evaluate.batch_size must be at least 1"),
        (params.evaluate.figure_persons >= 0, "evaluate.figure_persons must not be negative"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{where}: {message}")
    for name, m in params.models.items():
        if m.lr_schedule not in SCHEDULES:
            raise ConfigError(f"{where}: models.{name}.lr_schedule is {m.lr_schedule!r}; "
                              f"expected one of {', '.join(SCHEDULES)}")
        if min(m.epochs, m.batch_size) < 1 or m.lr <= 0 or min(m.warmup_iters, m.early_stop) < 0:
            raise ConfigError(f"{where}: models.{name}: epochs, batch_size and lr must be positive, "
                              "warmup_iters and early_stop not negative")
    a = params.augment
    if not (0 <= a.scale < 1 and a.rotation >= 0 and a.half_body_padding > 0 and a.shift >= 0
            and all(0 <= p <= 1 for p in (a.rotation_prob, a.flip_prob, a.half_body_prob,
                                                a.top_cut_prob))):
        raise ConfigError(f"{where}: augment: scale must be in [0, 1), rotation >= 0, "
                          "probabilities in [0, 1], half_body_padding > 0, shift >= 0")
    if params.subsets.lower_min_visibility not in (1, 2):
        raise ConfigError(f"{where}: subsets.lower_min_visibility must be 1 or 2")
    if params.crop.width % 4 or params.crop.height % 4:
        raise ConfigError(f"{where}: crop width and height must be multiples of 4, the models' feature stride")
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return params_from_dict(raw, str(path))
