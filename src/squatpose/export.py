"""A trained model as a function of crops: PyTorch (the reference) or an ONNX export run by onnxruntime.

`export_onnx` writes one self-contained .onnx file (weights inside, the checkpoint's metadata in
the model's metadata_props) and checks it against PyTorch; `load_pose_model` opens either kind
behind the same `PoseModel.outputs(crops)` call (decoded by `PoseModel.codec`), so analysis does
not care which one it runs.
"""

import contextlib
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from squatpose.atomic import atomic_path
from squatpose.codec import Codec, codec_from_meta
from squatpose.config import CropConfig
from squatpose.errors import SquatposeError
from squatpose.imaging import crops_to_tensor

META_KEY = "squatpose_meta"  # metadata_props key holding the checkpoint's meta as JSON
AGREEMENT = 1e-3  # the largest output difference allowed between the ONNX file and PyTorch


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


def onnx_session(path: Path, threads: int = 0):
    """An onnxruntime CPU session for `path` (`threads` 0: onnxruntime's default, all cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    # idle worker threads sleep instead of spinning: decoding and drawing need those cores too
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise SquatposeError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:200]})") from None


def load_pose_model(path: str | Path, backend: str = "auto", threads: int = 0) -> PoseModel:
    """The model at `path`: a squatpose checkpoint (.pt, PyTorch) or its ONNX export (.onnx).

    `backend` "auto" follows the file's suffix; "onnx" with a .pt file exports it first, into
    `onnx_cache()` under the checkpoint's content hash (so it is reused only for those exact
    weights, and nothing is added to the pipeline's outputs).
    """
    from squatpose.models import load_checkpoint

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


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = 18) -> float:
    """Write the checkpoint's model as one ONNX file (dynamic batch) to `out`, atomically.

    Returns the largest absolute output difference to PyTorch on a batch of two real-sized
    random inputs; refuses to write a file that differs by more than `AGREEMENT`.
    """
    import onnx

    from squatpose.models import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    crop = meta["crop"]
    x = torch.randn(2, 3, crop["height"], crop["width"], generator=torch.Generator().manual_seed(0))
    out = Path(out)
    with tempfile.TemporaryDirectory() as scratch, atomic_path(out) as tmp:
        raw = Path(scratch) / "model.onnx"
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
            torch.onnx.export(model, (x,), str(raw), input_names=["image"], output_names=["outputs"],
                              dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, opset_version=opset,
                              dynamo=True, external_data=False, verbose=False, report=False)
        proto = onnx.load(str(raw))
        kept = {k: v for k, v in meta.items() if k != "history"} | {"checkpoint_sha256": file_sha256(Path(checkpoint))}
        onnx.helper.set_model_props(proto, {META_KEY: json.dumps(kept, default=str)})
        onnx.save_model(proto, str(tmp))
        ort_out = onnx_session(tmp).run(None, {"image": x.numpy()})[0]
        with torch.inference_mode():
            diff = float(np.abs(ort_out - model(x).numpy()).max())
        if diff > AGREEMENT:
            raise SquatposeError(f"{out}: ONNX export differs from PyTorch by {diff:.2g} (> {AGREEMENT})")
    return diff
