"""The `full`, `mini` and `lower60k` subsets of a person table, and the stage that writes them."""

from pathlib import Path

import numpy as np
import pandas as pd

from squatpose.atomic import atomic_path, write_json
from squatpose.coco import images_dir, person_records, raw_annotations
from squatpose.config import SubsetsConfig
from squatpose.joints import keypoints_from_table

SPLITS = ("train", "val")


def lower(records: pd.DataFrame, min_visibility: int = 1) -> pd.DataFrame:
    """Persons with all six joints at visibility >= `min_visibility` (1: labeled, 2: visible)."""
    v = keypoints_from_table(records)[:, :, 2]
    return records[(v >= min_visibility).all(axis=1)].reset_index(drop=True)


def mini(full_table: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """A seeded random sample of `size` persons of `full` (all of it when smaller), in table order."""
    if len(full_table) <= size:
        return full_table.copy()
    pick = np.sort(np.random.default_rng(seed).choice(len(full_table), size, replace=False))
    return full_table.iloc[pick].reset_index(drop=True)


def make_subsets(records: pd.DataFrame, cfg: SubsetsConfig) -> dict[str, pd.DataFrame]:
    """All subsets of one split's person records.

    `full` is the records themselves: `person_records` keeps exactly the persons with at least
    one of the six joints labeled (v > 0).
    """
    return {
        "full": records,
        "mini": mini(records, cfg.mini_size, cfg.seed),
        "lower60k": lower(records, cfg.lower_min_visibility),
    }


def subset_path(subsets_dir: str | Path, split: str, subset: str) -> Path:
    """Where the table of one split and subset lives."""
    return Path(subsets_dir) / f"{split}-{subset}.parquet"


def write_subsets(raw_dir: str | Path, out_dir: str | Path, metrics_path: str | Path,
                  cfg: SubsetsConfig) -> dict:
    """Read both splits of a COCO-layout folder, write every subset table and the counts."""
    raw_dir = Path(raw_dir)
    counts = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for split in SPLITS:
            records, report = person_records(
                raw_annotations(raw_dir, split),
                images_dir(raw_dir, split),
            )
            tables = make_subsets(records, cfg)
            for name, table in tables.items():
                table.to_parquet(subset_path(tmp, split, name), index=False)
            counts[split] = {name: len(t) for name, t in tables.items()}
            counts[split].update(report.as_dict())
    write_json(metrics_path, counts)
    return counts
