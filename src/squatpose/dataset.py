"""The training and evaluation side of the shards: normalised crops, and the Dataset that reads a shard set.

shards.py writes the shard sets without torch (the `shards` stage stays small); this module reads them.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from squatpose.errors import ShardError
from squatpose.imaging import MEAN, STD
from squatpose.shards import FORMAT_VERSION

log = logging.getLogger(__name__)


def crops_to_tensor(crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 crops (N, H, W, 3) or (H, W, 3), RGB -> float32 (N, 3, H, W) or (3, H, W), normalised,
    contiguous, on the crops' device (training normalises each batch on its device)."""
    x = torch.as_tensor(crops)
    single = x.ndim == 3
    if single:
        x = x[None]
    x = x.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    x = ((x - mean) / std).contiguous()
    return x[0] if single else x


class ShardDataset(Dataset):
    """Samples of a shard set, read through memory maps (no JPEG decoding).

    `ann_ids` picks and orders the persons (e.g. a subset table's `ann_id` column); by default
    every sample. Persons asked for but absent from the shards (skipped images) are left out
    and counted in `missing`. Each item is a dict: `image` (H, W, 3) uint8 RGB as stored,
    `kp_crop` (6, 3) float32 (x, y, v) in crop pixels, `in_crop` (6,) float32 (labeled and inside
    the crop), `index` (int). `crops_to_tensor` normalises a batch of images on the training
    device (a worker process hands over a quarter of the bytes that float32 would take); targets
    come from the codec (codec.py), not from the shards.
    """

    def __init__(self, shards_dir: str | Path, ann_ids: np.ndarray | None = None):
        self.dir = Path(shards_dir)
        index_path = self.dir / "index.json"
        if not index_path.is_file():
            raise ShardError(f"{index_path}: no index: the shard set is missing or incomplete "
                             "(run `dvc repro`)")
        self.index = json.loads(index_path.read_text())
        if self.index.get("format_version") != FORMAT_VERSION:
            raise ShardError(f"{index_path}: format {self.index.get('format_version')}, "
                             f"expected {FORMAT_VERSION}: rebuild the shards")
        self.shard_names = [s["name"] for s in self.index["shards"]]
        all_ids = [np.load(self.dir / n / "ann_ids.npy") for n in self.shard_names]
        shard_of = np.concatenate([np.full(len(a), k) for k, a in enumerate(all_ids)] or [[]])
        row_of = np.concatenate([np.arange(len(a)) for a in all_ids] or [[]])
        ids = np.concatenate(all_ids) if all_ids else np.zeros(0, np.int64)
        if ann_ids is None:
            pick = np.arange(len(ids))
            self.missing = 0
        else:
            pos = pd.Series(np.arange(len(ids)), index=ids)
            wanted = pd.Index(np.asarray(ann_ids, np.int64))
            found = wanted.isin(pos.index)
            self.missing = int((~found).sum())
            pick = pos.loc[wanted[found]].to_numpy()
        self.shard = shard_of[pick].astype(np.int64)
        self.row = row_of[pick].astype(np.int64)
        self.ann_ids = ids[pick]
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    @classmethod
    def from_subset(cls, shards_dir: str | Path, subset_table: str | Path) -> "ShardDataset":
        """The persons of a subset table (parquet), read from a shard set that contains them."""
        ids = pd.read_parquet(subset_table, columns=["ann_id"])["ann_id"].to_numpy()
        ds = cls(shards_dir, ids)
        if ds.missing:
            log.warning("%s: %d of %d persons are not in %s (skipped while sharding)",
                        subset_table, ds.missing, len(ids), shards_dir)
        return ds

    def __len__(self) -> int:
        return len(self.row)

    def array(self, name: str, i: int) -> np.ndarray:
        """Raw stored array `name` of sample i (memory-mapped; copy it before writing)."""
        k = int(self.shard[i])
        key = (k, name)
        if key not in self._maps:  # opened lazily, so each DataLoader worker maps its own
            self._maps[key] = np.load(self.dir / self.shard_names[k] / f"{name}.npy", mmap_mode="r")
        return self._maps[key][self.row[i]]

    def gather(self, name: str) -> np.ndarray:
        """Stored array `name` of every selected sample, in dataset order."""
        out = None
        for k in np.unique(self.shard):
            pos = np.flatnonzero(self.shard == k)
            values = np.load(self.dir / self.shard_names[k] / f"{name}.npy", mmap_mode="r")[self.row[pos]]
            if out is None:
                out = np.empty((len(self),) + values.shape[1:], values.dtype)
            out[pos] = values
        return out if out is not None else np.zeros((0,))

    def __getitem__(self, i: int) -> dict:
        return {
            "image": torch.from_numpy(np.array(self.array("images", i))),
            "kp_crop": torch.from_numpy(np.array(self.array("kp_crop", i))),
            "in_crop": torch.from_numpy(np.array(self.array("in_crop", i))),
            "index": i,
        }
