"""A trained model as one ONNX file: `export_onnx` writes it (weights inside, the checkpoint's
metadata in the model's metadata_props) and checks it against PyTorch; `onnx_session` opens one
for onnxruntime. `pose_model.load_pose_model` runs either kind behind one call.
"""

import contextlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from squatpose.atomic import atomic_path
from squatpose.errors import SquatposeError
from squatpose.fingerprint import file_sha256

META_KEY = "squatpose_meta"  # metadata_props key holding the checkpoint's meta as JSON
AGREEMENT = 1e-3  # the largest output difference allowed between the ONNX file and PyTorch


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
