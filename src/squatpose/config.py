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

SOURCES = ("sample", "coco2017")


@dataclass(frozen=True)
class DataConfig:
    source: str = "sample"  # sample | coco2017
    sample_dir: str = "data/sample"


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
class HeatmapConfig:
    width: int = 48
    height: int = 64
    sigma: float = 2.0


@dataclass(frozen=True)
class ShardsConfig:
    subset: str = "full"  # the subset whose persons are cropped; the others select from it
    shard_size: int = 512
    workers: int = 2


@dataclass(frozen=True)
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    subsets: SubsetsConfig = field(default_factory=SubsetsConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    heatmap: HeatmapConfig = field(default_factory=HeatmapConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)


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
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{where}.{name}: expected a string, got {value!r}")
        out[name] = value
    return cls(**out)


def params_from_dict(raw: dict[str, Any], where: str = "params.yaml") -> Params:
    """Params from an already-parsed params.yaml; sections this package does not use are ignored."""
    sections = {f.name: f for f in dataclasses.fields(Params)}
    built = {
        name: _section(f.default_factory().__class__, raw.get(name), f"{where}: {name}")
        for name, f in sections.items()
    }
    params = Params(**built)
    if params.data.source not in SOURCES:
        raise ConfigError(
            f"{where}: data.source is {params.data.source!r}; expected one of {', '.join(SOURCES)}"
        )
    if params.subsets.lower_min_visibility not in (1, 2):
        raise ConfigError(f"{where}: subsets.lower_min_visibility must be 1 or 2")
    if params.crop.width % params.heatmap.width or params.crop.height % params.heatmap.height:
        raise ConfigError(f"{where}: crop size must be a multiple of the heatmap size")
    if params.crop.width // params.heatmap.width != params.crop.height // params.heatmap.height:
        raise ConfigError(f"{where}: crop and heatmap must have the same stride in x and y")
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
