"""A trained model as a function of crops: PyTorch (the reference) or its ONNX export run by
onnxruntime, behind the same `PoseModel.outputs(crops)` call (decoded by `PoseModel.codec`), so
analysis does not care which one it runs.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from squatpose.codec import Codec, codec_from_meta
from squatpose.config import CropConfig
from squatpose.dataset import crops_to_tensor
from squatpose.errors import SquatposeError
from squatpose.export import META_KEY, export_onnx, onnx_session
from squatpose.fingerprint import file_sha256


@dataclass
class PoseModel:
    """Crops in, codec outputs out, with the codec and crop settings the model was trained with."""
    run: Callable[[np.ndarray], np.ndarray]  # (N, 3, H, W) float32 normalised -> (N, 6, ...) outputs
    meta: dict[str, Any]
    backend: str  # "torch" | "onnx"
    path: Path

    @property
    def crop(self) -> CropConfig:
        return CropConfig(**self.meta["crop"])

    @property
    def codec(self) -> Codec:
        return codec_from_meta(self.meta)

    def outputs(self, crops: np.ndarray) -> np.ndarray:
        """The codec's outputs (heatmaps (N, 6, h, w), or SimCC logits) of uint8 RGB crops (N, H, W, 3)."""
        return self.run(crops_to_tensor(np.ascontiguousarray(crops)).numpy())


def torch_runner(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """The PyTorch model as a numpy function (CPU, eval mode, no autograd)."""
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).float().numpy()
    return run


def load_pose_model(path: str | Path, backend: str = "auto", threads: int = 0) -> PoseModel:
    """The model at `path`: a squatpose checkpoint (.pt, PyTorch) or its ONNX export (.onnx).

    `backend` "auto" follows the file's suffix; "onnx" with a .pt file exports it first, into
    `onnx_cache()` under the checkpoint's content hash (so it is reused only for those exact
    weights, and nothing is added to the pipeline's outputs).
    """
    from squatpose.models import load_checkpoint  # torchvision: only when a checkpoint is opened

    path = Path(path)
    if not path.is_file():
        raise SquatposeError(f"{path}: model not found (a model.pt from the pipeline, or its .onnx export)")
    is_onnx = path.suffix == ".onnx"
    if backend == "auto":
        backend = "onnx" if is_onnx else "torch"
    if backend == "torch":
        if is_onnx:
            raise SquatposeError(f"{path}: an ONNX file runs with the onnx backend only")
        if threads:
            torch.set_num_threads(threads)
        model, meta = load_checkpoint(path)
        return PoseModel(torch_runner(model), meta, "torch", path)
    if backend != "onnx":
        raise SquatposeError(f"unknown backend {backend!r}; expected auto, torch or onnx")
    if not is_onnx:
        onnx_path = onnx_cache() / f"{file_sha256(path)[:20]}.onnx"
        if not onnx_path.is_file():
            export_onnx(path, onnx_path)
        path = onnx_path
    session = onnx_session(path, threads)
    meta_json = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if meta_json is None:
        raise SquatposeError(f"{path}: not a squatpose ONNX export (no {META_KEY} metadata)")
    name = session.get_inputs()[0].name
    return PoseModel(lambda x: session.run(None, {name: x})[0], json.loads(meta_json), "onnx", path)


def onnx_cache() -> Path:
    """Where `load_pose_model` keeps its ONNX exports: $SQUATPOSE_CACHE, else ~/.cache/squatpose/onnx."""
    root = os.environ.get("SQUATPOSE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "squatpose"
    return Path(root) / "onnx"
