"""Training on real sample crops: overfitting, resume after a kill, DDP, MLflow."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from squatpose.codec import HeatmapCodec, SimCCCodec
from squatpose.config import params_from_dict
from squatpose.dataset import ShardDataset, crops_to_tensor
from squatpose.errors import SquatposeError
from squatpose.evaluate import Predictions, accuracy, evaluate_row, summary, validate
from squatpose.fingerprint import file_sha256
from squatpose.models import ARCHITECTURES, build, load_checkpoint, save_checkpoint
from squatpose.models.heads import SimCCHead
from squatpose.subsets import subset_path
from squatpose.train import train_row, train_step
from tests.conftest import REPO, free_port, sample_shards


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Subset tables and shards of the embedded sample, as the pipeline lays them out."""
    root = tmp_path_factory.mktemp("data")
    sample_shards(root)
    return root


def make_params(tmp_path: Path, epochs: int = 3, model: str = "dilated", row: dict | None = None,
                arch: dict | None = None, **train) -> dict:
    raw = {
        "rows": {"r": {"model": model, "subset": "lower60k", **(row or {})}},
        "model": model,
        "models": {model: {"epochs": epochs, "batch_size": 8, "lr": 0.001, **(arch or {})}},
        "train": {"seed": 0, **train},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return raw


CODECS = {"heatmap-s4": HeatmapCodec(), "heatmap-s2": HeatmapCodec(stride=2), "simcc": SimCCCodec()}


# mobilenet is left out: from scratch at 192x256 it takes over an hour of this CPU to fit 4 crops
# (its learning on real data is in benchmarks/learn_lspet.py; test_models checks its shapes)
@pytest.mark.slow
@pytest.mark.timeout(1800)  # resnet18 from scratch: about 10 minutes on 2 busy cores
@pytest.mark.parametrize("name, codec_name", [(n, "heatmap-s4") for n in ARCHITECTURES if n != "mobilenet"]
                         + [("dilated", "heatmap-s2"), ("dilated", "simcc")])
def test_overfit_one_batch_of_real_crops(name, codec_name, data):
    """A few hundred training steps (train_step: targets and loss from the codec) on 4 real crops
    drive the loss near zero and PCK@0.05 to 1."""
    torch.manual_seed(0)
    table = pd.read_parquet(subset_path(data / "subsets", "train", "lower60k")).iloc[:4]
    ds = ShardDataset(data / "shards" / "train", table["ann_id"].to_numpy())
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    codec = CODECS[codec_name]
    model = build(name, codec)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    first = None
    for step in range(1, 401):
        model.train()
        loss = train_step(model, opt, scaler, batch, codec, None, None, torch.device("cpu"))
        assert not loss.requires_grad
        first = first or loss.item()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                out = model(crops_to_tensor(batch["image"]))
            kp, conf = codec.decode(out.numpy())
            m = accuracy(Predictions(kp, conf, 0.0, np.zeros(0)), ds)
            if m["pck@0.05"] == 1.0 and loss.item() < 0.05 * first:
                break
    assert m["pck@0.05"] == 1.0, f"{name}: PCK@0.05 {m['pck@0.05']} after {step} steps"
    assert loss.item() < 0.05 * first, f"{name}: loss {loss.item():.2e} from {first:.2e}"


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(data, tmp_path):
    """With augmentation, a cosine schedule with warm-up and best-epoch selection: all resume exactly."""
    raw = make_params(tmp_path, epochs=4, row={"augment": True}, arch={"lr_schedule": "cosine", "warmup_iters": 3})
    params = params_from_dict(raw)
    straight = train_row("r", params, data / "shards", data / "subsets", tmp_path / "straight",
                         progress=False, track=False, validate=validate)
    out = tmp_path / "killed"
    driver = textwrap.dedent(f"""
        import yaml
        from squatpose.config import params_from_dict
        from squatpose.evaluate import validate
        from squatpose.train import train_row
        params = params_from_dict(yaml.safe_load(open({str(tmp_path / 'params.yaml')!r})))
        train_row("r", params, {str(data / 'shards')!r}, {str(data / 'subsets')!r}, {str(out)!r},
                  progress=False, track=False, validate=validate)
    """)
    proc = subprocess.Popen([sys.executable, "-c", driver])
    deadline = time.time() + 120
    while not (out / "last.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before its first checkpoint"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model.pt").exists()
    done = torch.load(out / "last.pt", weights_only=True)["epochs_done"]
    assert 1 <= done < 4
    resumed = train_row("r", params, data / "shards", data / "subsets", out, progress=False, track=False, validate=validate)
    a, meta_a = load_checkpoint(straight)
    b, meta_b = load_checkpoint(resumed)
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k
    assert [h["train_loss"] for h in meta_a["history"]] == [h["train_loss"] for h in meta_b["history"]]
    assert len(meta_b["history"]) == 4 and meta_b["augment"]["flip_prob"] == 0.5
    pck = [h["val_pck@0.05"] for h in meta_b["history"]]
    assert meta_b["kept_epoch"] == 1 + int(np.argmax(pck))  # the first of the best
    lrs = [h["lr"] for h in meta_b["history"]]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.1 * 0.001  # cosine to ~0
    # a finished run leaves nothing to resume: when DVC reruns it (code or data changed), it trains
    assert not (out / "last.pt").exists() and not (tmp_path / "straight" / "last.pt").exists()


def test_a_simcc_row_trains_and_evaluates_with_its_codec(data, tmp_path):
    """codec.kind simcc: the row trains a SimCC head, its checkpoint carries the codec, and the
    evaluation decodes with it (and says so); the codec is part of the resume key."""
    raw = make_params(tmp_path, epochs=1)
    raw["codec"] = {"kind": "simcc", "split": 2.0, "sigma": 2.0}
    params = params_from_dict(raw)
    ckpt = train_row("r", params, data / "shards", data / "subsets", tmp_path / "simcc", progress=False, track=False, validate=validate)
    model, meta = load_checkpoint(ckpt)
    assert isinstance(model.head, SimCCHead)
    assert meta["codec"] == {"kind": "simcc", "stride": 4, "split": 2.0, "sigma": 2.0, "decoding": "quarter"}
    assert np.isfinite(meta["history"][0]["train_loss"]) and meta["history"][0]["train_loss"] > 0
    metrics = evaluate_row("r", params, model, meta, data / "shards" / "val", data / "subsets", tmp_path / "fig")
    assert metrics["codec"] == "SimCCCodec" and metrics["decoding"] is None
    assert metrics["val_persons"] == 22 and 0 <= metrics["pck@0.05"] <= 1
    assert metrics["val_loss"] == pytest.approx(meta["history"][0]["val_loss"], rel=1e-4)
    assert (tmp_path / "fig" / "heatmaps.png").is_file() and (tmp_path / "fig" / "predictions.png").is_file()
    from squatpose.train import run_fingerprint

    ds = ShardDataset.from_subset(data / "shards" / "train", subset_path(data / "subsets", "train", "lower60k"))
    vs = ShardDataset.from_subset(data / "shards" / "val", subset_path(data / "subsets", "val", "lower60k"))
    heatmap = params_from_dict(make_params(tmp_path, epochs=1))
    raw["codec"]["sigma"] = 3.0
    assert len({run_fingerprint("r", p, ds, vs) for p in (params, heatmap, params_from_dict(raw))}) == 3


def test_evaluation_decodes_with_params_decoding_and_refuses_other_crops(data, tmp_path):
    """A heatmap model is decoded with params.yaml's codec.decoding, whatever it was trained with;
    a model for other crops than the shards' is refused."""
    torch.manual_seed(0)
    model = build("dilated").eval()
    meta = {"model": "dilated", "crop": {"width": 192, "height": 256, "padding": 1.25},
            "codec": {"kind": "heatmap", "stride": 4, "split": 2.0, "sigma": 2.0, "decoding": "dark"}}
    raw = make_params(tmp_path)
    raw["evaluate"] = {"figure_persons": 0}
    results = {}
    for decoding in ("argmax", "quarter", "dark"):
        raw["codec"] = {"decoding": decoding}
        m = evaluate_row("r", params_from_dict(raw), model, meta, data / "shards" / "val", data / "subsets")
        assert m["codec"] == "HeatmapCodec" and m["decoding"] == decoding
        results[decoding] = m
    assert results["argmax"]["val_loss"] == results["quarter"]["val_loss"] == results["dark"]["val_loss"]
    # another decoding, other joints: the knee angles (continuous in the joints) differ
    angles = {d: (m["knee_angle"]["left_mae_deg"], m["knee_angle"]["right_mae_deg"]) for d, m in results.items()}
    assert len(set(angles.values())) == 3, angles
    small = {**meta, "crop": {"width": 96, "height": 128, "padding": 1.25}}
    with pytest.raises(SquatposeError, match="crops are 192x256, the model takes 96x128"):
        evaluate_row("r", params_from_dict(raw), model, small, data / "shards" / "val", data / "subsets")


def test_lr_schedules():
    from squatpose.config import ModelConfig
    from squatpose.train import lr_factor

    step = ModelConfig(epochs=140, lr_schedule="step", lr_steps=(90, 120), lr_factor=0.1)
    assert [lr_factor(step, e, 10**6) for e in (0, 89.9, 90, 119.5, 120, 139)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    cosine = ModelConfig(epochs=10, lr_schedule="cosine")
    assert [lr_factor(cosine, e, 10**6) for e in (0, 5, 10)] == pytest.approx([1, 0.5, 0])
    warm = ModelConfig(epochs=10, lr_schedule="constant", warmup_iters=100)
    assert [lr_factor(warm, 0, i) for i in (0, 50, 100, 500)] == pytest.approx([1e-3, 0.5005, 1, 1])


@pytest.mark.slow
def test_best_epoch_is_kept_and_early_stop_follows_its_rule(data, tmp_path):
    """model.pt holds the weights of the best val PCK@0.05 epoch (the same weights as a run that
    ended at that epoch), and training stops once `early_stop` epochs bring nothing better.
    The val PCK sequence is scripted so that the rule must fire: best at epoch 2, stop after 4."""
    scripted = iter([0.1, 0.3, 0.2, 0.25, 0.5, 0.6])

    def scripted_validate(model, ds, codec, device):
        return validate(model, ds, codec, device)[0], next(scripted)

    arch = {"lr_schedule": "constant", "lr": 0.003}
    params = params_from_dict(make_params(tmp_path, epochs=6, arch={**arch, "early_stop": 2}))
    ckpt = train_row("r", params, data / "shards", data / "subsets", tmp_path / "long", progress=False, track=False,
                     validate=scripted_validate)
    model, meta = load_checkpoint(ckpt)
    assert [h["val_pck@0.05"] for h in meta["history"]] == [0.1, 0.3, 0.2, 0.25]
    assert meta["kept_epoch"] == 2 and meta["epochs_run"] == 4 and meta["stopped_early"]
    short = params_from_dict(make_params(tmp_path, epochs=2, arch=arch, select_best=False))
    ref, ref_meta = load_checkpoint(train_row("r", short, data / "shards", data / "subsets", tmp_path / "short",
                                              progress=False, track=False, validate=validate))
    assert ref_meta["kept_epoch"] == 2 and not ref_meta["stopped_early"]
    for (k, x), y in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(x, y), k
    # early_stop and select_best pick from the trajectory, they do not change it: a new value
    # keeps the same resume key, but not the same model.pt
    from squatpose.train import model_fingerprint, run_fingerprint

    ds = ShardDataset.from_subset(data / "shards" / "train", subset_path(data / "subsets", "train", "lower60k"))
    vs = ShardDataset.from_subset(data / "shards" / "val", subset_path(data / "subsets", "val", "lower60k"))
    other = params_from_dict(make_params(tmp_path, epochs=6, arch={**arch, "early_stop": 5}))
    assert run_fingerprint("r", params, ds, vs) == run_fingerprint("r", other, ds, vs)
    traj = run_fingerprint("r", params, ds, vs)
    assert model_fingerprint(traj, params, "r") != model_fingerprint(traj, other, "r")


def interrupt_in_epoch_two(params, data: Path, out: Path, history: Path, monkeypatch) -> None:
    """Train 2 epochs, stopped by Ctrl-C in the second (after epoch 1's last.pt)."""
    import squatpose.train as train_module

    real_write = train_module.write_history

    def crash_in_epoch_two(path, rows):
        if len(rows) == 2:
            raise KeyboardInterrupt
        real_write(path, rows)

    with monkeypatch.context() as m:
        m.setattr(train_module, "write_history", crash_in_epoch_two)
        with pytest.raises(KeyboardInterrupt):
            train_row("r", params, data / "shards", data / "subsets", out, history, progress=False, track=False, validate=validate)
    assert torch.load(out / "last.pt", weights_only=True)["epochs_done"] == 1


@pytest.mark.slow
def test_interrupted_run_with_changed_code_starts_afresh(data, tmp_path, monkeypatch, caplog):
    import logging
    import squatpose.train as train_module

    params = params_from_dict(make_params(tmp_path, epochs=2))
    interrupt_in_epoch_two(params, data, tmp_path / "o", tmp_path / "h.csv", monkeypatch)
    monkeypatch.setattr(train_module, "code_of_row", lambda model: "edited loss.py")
    with caplog.at_level(logging.INFO, logger="squatpose.train"):
        train_row("r", params, data / "shards", data / "subsets", tmp_path / "o", tmp_path / "h.csv",
                  progress=False, track=False, validate=validate)
    assert "starting afresh" in caplog.text and "resuming" not in caplog.text
    # and a finished model.pt of the same inputs is kept, not trained again
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="squatpose.train"):
        train_row("r", params, data / "shards", data / "subsets", tmp_path / "o", progress=False, track=False, validate=validate)
    assert "already trained" in caplog.text


@pytest.mark.slow
def test_damaged_resume_checkpoint_is_set_aside_and_training_starts_afresh(data, tmp_path, monkeypatch, caplog):
    import logging

    params = params_from_dict(make_params(tmp_path, epochs=2))
    interrupt_in_epoch_two(params, data, tmp_path / "o", tmp_path / "h.csv", monkeypatch)
    last = tmp_path / "o" / "last.pt"
    damaged = last.read_bytes()[: last.stat().st_size // 2]  # a disk that filled up mid-write
    last.write_bytes(damaged)
    with caplog.at_level(logging.INFO, logger="squatpose.train"):
        final = train_row("r", params, data / "shards", data / "subsets", tmp_path / "o", tmp_path / "h.csv",
                          progress=False, track=False, validate=validate)
    assert "cannot be read" in caplog.text and "moved to last.pt.damaged" in caplog.text
    assert "resuming" not in caplog.text
    assert (tmp_path / "o" / "last.pt.damaged").read_bytes() == damaged
    assert load_checkpoint(final)[1]["epochs_run"] == 2


def test_non_finite_loss_stops_training_and_keeps_the_previous_model(data, tmp_path, monkeypatch):
    import squatpose.train as train_module

    good = train_row("r", params_from_dict(make_params(tmp_path, epochs=1)), data / "shards", data / "subsets",
                     tmp_path / "o", progress=False, track=False, validate=validate)
    before = good.read_bytes()
    real_step = train_module.train_step

    def nan_keypoint(net, optimizer, scaler, batch, *args):  # what a NaN in an annotation gives
        batch["kp_crop"][0, 0, 0] = float("nan")
        return real_step(net, optimizer, scaler, batch, *args)

    monkeypatch.setattr(train_module, "train_step", nan_keypoint)
    with pytest.raises(SquatposeError, match="row r: training loss is not finite in epoch 1"):
        train_row("r", params_from_dict(make_params(tmp_path, epochs=2)), data / "shards", data / "subsets",
                  tmp_path / "o", progress=False, track=False, validate=validate)
    assert good.read_bytes() == before and not (tmp_path / "o" / "last.pt").exists()


@pytest.mark.slow
def test_failed_run_is_marked_failed_in_mlflow(data, tmp_path, monkeypatch):
    import squatpose.train as train_module
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow exports it; undone after the test
    params = params_from_dict(make_params(tmp_path, epochs=2))

    def broken(path, history):
        raise RuntimeError("disk full")

    monkeypatch.setattr(train_module, "write_history", broken)
    with pytest.raises(RuntimeError):
        train_row("r", params, data / "shards", data / "subsets", tmp_path / "o", tmp_path / "h.csv",
                  progress=False, validate=validate)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("squatpose").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(data, tmp_path):
    make_params(tmp_path, epochs=1)
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port()),
         str(REPO / "stages" / "train.py"), "--row", "r", "--shards", str(data / "shards"),
         "--subsets", str(data / "subsets"), "--out", str(tmp_path / "ddp")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, meta = load_checkpoint(tmp_path / "ddp" / "model.pt")
    assert meta["world_size"] == 2
    assert len(meta["replica_checksums"]) == 2 and len(set(meta["replica_checksums"])) == 1
    # the two ranks together saw the 25 persons once (the distributed sampler pads to 26), not twice
    assert meta["history"][0]["samples"] == 26


@pytest.mark.slow
def test_mlflow_server_shows_the_run(data, tmp_path):
    """Train and evaluate through the stage scripts, then read the run back from `mlflow server`."""
    make_params(tmp_path, epochs=2)
    git = lambda *args: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                                       check=True, capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    git("add", "params.yaml")
    git("commit", "-q", "-m", "the experiment")
    commit = git("rev-parse", "HEAD")  # the run is tagged with the commit it ran at
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    env.pop("MLFLOW_TRACKING_URI", None)  # params.yaml's store, as in a fresh shell
    run = lambda *args: subprocess.run([sys.executable, *args], cwd=tmp_path, env=env,
                                       capture_output=True, text=True, timeout=300)
    p = run(str(REPO / "stages" / "train.py"), "--row", "r", "--shards", str(data / "shards"),
            "--subsets", str(data / "subsets"), "--out", "ckpt", "--history", "history.csv")
    assert p.returncode == 0, p.stderr[-3000:]
    p = run(str(REPO / "stages" / "evaluate.py"), "--row", "r", "--checkpoint", "ckpt/model.pt",
            "--shards", str(data / "shards" / "val"), "--subsets", str(data / "subsets"),
            "--metrics", "r.json", "--details", "r-full.json", "--figures", "fig")
    assert p.returncode == 0, p.stderr[-3000:]
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from mlflow.tracking import MlflowClient
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        deadline = time.time() + 90
        while True:
            try:
                exp = client.get_experiment_by_name("squatpose")
                break
            except Exception:
                assert server.poll() is None and time.time() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        runs = client.search_runs([exp.experiment_id])
        assert len(runs) == 1  # the evaluation is recorded on the training run
        r = runs[0]
        assert r.info.status == "FINISHED"
        assert r.data.tags["model"] == "dilated" and r.data.tags["subset"] == "lower60k"
        assert r.data.tags["git_commit"] == commit
        assert r.data.params["model.epochs"] == "2" and r.data.params["train.seed"] == "0"
        assert [m.step for m in client.get_metric_history(r.info.run_id, "val_loss")] == [1, 2]
        assert [m.step for m in client.get_metric_history(r.info.run_id, "lr")] == [1, 2]
        assert r.data.metrics["kept_epoch"] in (1, 2) and r.data.params["model.lr_schedule"] == "step"
        assert r.data.params["augment"] == "False"
        assert r.data.params["codec.kind"] == "heatmap" and r.data.params["codec.decoding"] == "quarter"
        # the evaluation: the DVC metric file's numbers under the same names ('@' as '_at_'), once
        summary = yaml.safe_load((tmp_path / "r.json").read_text())
        assert set(summary) == {"pck@0.05", "pck@0.1", "ap", "knee_mae_deg"}
        for key, value in summary.items():
            [point] = client.get_metric_history(r.info.run_id, key.replace("@", "_at_"))
            assert point.value == pytest.approx(value)
        assert not any(k.startswith("final.") for k in r.data.metrics)
        assert r.data.tags["evaluate.flip_test"] == "False"
        details = yaml.safe_load((tmp_path / "r-full.json").read_text())
        assert details["codec"] == "HeatmapCodec" and details["decoding"] == "quarter"
        assert details["pck@0.05"] == summary["pck@0.05"] and "train_time_s" not in details
        # the run ended when its training ended, not when the evaluation wrote to it
        evaluated = client.get_metric_history(r.info.run_id, "pck_at_0.05")[0].timestamp
        assert r.info.end_time < evaluated
        assert r.info.end_time - r.info.start_time < 1000 * r.data.metrics["train_time_s"] + 30_000
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"r-full.json", "fig", "history.csv"} <= names
        assert {a.path for a in client.list_artifacts(r.info.run_id, "fig")} == {"fig/heatmaps.png", "fig/predictions.png"}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_results_table_from_real_evaluations(data, tmp_path):
    """report: one row per row of params (in their order) from evaluate_row's JSON, the shipped
    model's reference row last, the headline = the first row of `model`."""
    from squatpose.atomic import write_json
    from squatpose.report import write_report

    raw = make_params(tmp_path)
    raw["rows"] = {"a": {"model": "dilated", "subset": "lower60k"}, "b": {"model": "resnet18", "subset": "full"}}
    raw["models"]["resnet18"] = raw["models"]["dilated"]
    raw["model"] = "resnet18"
    raw["evaluate"] = {"figure_persons": 0}
    params = params_from_dict(raw)
    metrics = {}
    for row in ("a", "b"):
        torch.manual_seed(0)
        model_name = params.rows[row].model
        meta = {"model": model_name, "params": 1e6, "macs": 2e9, "train_time_s": 3.0, "epochs": 1, "train_persons": 5}
        metrics[row] = evaluate_row(row, params, build(model_name).eval(), meta, data / "shards" / "val",
                                    data / "subsets")
        write_json(tmp_path / "details" / f"{row}.json", metrics[row])
        write_json(tmp_path / "rows" / f"{row}.json", summary(metrics[row]))
        history = pd.DataFrame({"epoch": [1, 2], "lr": [1e-3, 1e-3], "train_loss": [0.5, 0.4], "val_loss": [0.6, 0.5],
                                "val_pck@0.05": [0.1, 0.2], "samples": [5, 5]})
        (tmp_path / "history").mkdir(exist_ok=True)
        history.assign(train_loss=history.train_loss + len(row)).to_csv(tmp_path / "history" / f"{row}.csv", index=False)
    write_json(tmp_path / "reference.json", metrics["a"] | {"row": "shipped"})
    dirs = tmp_path / "rows", tmp_path / "details", tmp_path / "history"
    table = write_report(params, *dirs, tmp_path / "out", tmp_path / "reference.json")
    assert table["row"].tolist() == ["a", "b", "shipped (reference, not retrained)"]
    assert table["val_persons"].tolist() == [22, metrics["b"]["val_persons"], 22] and metrics["b"]["val_persons"] > 22
    assert table.loc[1, "pck@0.05 LKnee"] == metrics["b"]["pck@0.05_joints"]["left_knee"]
    assert table.loc[0, "GMACs"] == 2.0 and table.loc[0, "knee angle MAE L (deg)"] == metrics["a"]["knee_angle"]["left_mae_deg"]
    assert not any("time" in c for c in table.columns)  # wall-clock figures are MLflow's and the benchmarks'
    knee = metrics["b"]["knee_angle"]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == {"headline": {
        "pck@0.05": metrics["b"]["pck@0.05"], "pck@0.1": metrics["b"]["pck@0.1"], "ap": metrics["b"]["ap"],
        "knee_mae_deg": pytest.approx((knee["left_mae_deg"] * knee["left_n"] + knee["right_mae_deg"] * knee["right_n"])
                                      / (knee["left_n"] + knee["right_n"]))}}
    md = (tmp_path / "out" / "results.md").read_text()
    assert f"| a | dilated | lower60k | 5 | 22 | 1 | {metrics['a']['val_loss']:.3f} |" in md
    history = pd.read_csv(tmp_path / "out" / "history.csv")
    assert history["row"].tolist() == ["a", "a", "b", "b"] and history["train_loss"].tolist() == [1.5, 1.4, 1.5, 1.4]
    with pytest.raises(SquatposeError, match="no metrics for row b"):
        (tmp_path / "details" / "b.json").unlink()
        write_report(params, *dirs, tmp_path / "out2")
    write_json(tmp_path / "details" / "b.json", metrics["b"])
    (tmp_path / "history" / "b.csv").unlink()
    with pytest.raises(SquatposeError, match=r"b\.csv: no training history for row b"):
        write_report(params, *dirs, tmp_path / "out2")


def test_every_epoch_trains_in_train_mode_whatever_validation_left(data, tmp_path, monkeypatch):
    """BatchNorm must see training batches in train mode even if a validation leaves eval mode on."""
    import squatpose.train as train_module

    modes, real_step = [], train_module.train_step

    def recording_step(net, *args):
        modes.append(net.training)
        return real_step(net, *args)

    def careless_validate(model, ds, codec, device):
        model.eval()
        return 0.0, 0.5

    monkeypatch.setattr(train_module, "train_step", recording_step)
    train_row("r", params_from_dict(make_params(tmp_path, epochs=2)), data / "shards", data / "subsets",
              tmp_path / "o", progress=False, track=False, validate=careless_validate)
    assert len(modes) == 2 * 4 and all(modes)  # 25 persons in batches of 8, both epochs


def test_a_row_fine_tunes_from_a_checkpoint_and_refuses_one_that_does_not_fit(data, tmp_path):
    """rows.<name>.init: training starts from those weights (at a learning rate of 1e-9 it ends
    where it started, not at the seeded random start), the weights' hash is part of the fingerprint
    (a changed file retrains), and another architecture's checkpoint is refused naming the file."""
    raw = make_params(tmp_path, epochs=2)
    scratch = train_row("r", params_from_dict(raw), data / "shards", data / "subsets", tmp_path / "scratch",
                        progress=False, track=False, validate=validate)
    raw["rows"]["r"]["init"] = str(scratch)
    raw["models"]["dilated"]["lr"] = 1e-9
    tuned = train_row("r", params_from_dict(raw), data / "shards", data / "subsets", tmp_path / "tuned",
                      progress=False, track=False, validate=validate)
    a, meta_a = load_checkpoint(scratch)
    b, meta_b = load_checkpoint(tuned)
    torch.manual_seed(0)
    fresh = build("dilated", HeatmapCodec())
    for (name, x), y, z in zip(a.named_parameters(), b.parameters(), fresh.parameters()):
        assert torch.allclose(x, y, atol=1e-6), name
    assert max((x - z).abs().max().item() for x, z in zip(a.parameters(), fresh.parameters())) > 1e-3
    assert meta_b["init_sha256"] == file_sha256(scratch) and meta_a["init_sha256"] is None
    # the same weights at another path: the run is up to date and kept; other weights: it retrains
    moved = tmp_path / "moved.pt"
    moved.write_bytes(scratch.read_bytes())
    raw["rows"]["r"]["init"] = str(moved)
    kept = tuned.stat().st_mtime_ns
    train_row("r", params_from_dict(raw), data / "shards", data / "subsets", tmp_path / "tuned",
              progress=False, track=False, validate=validate)
    assert tuned.stat().st_mtime_ns == kept
    save_checkpoint(moved, fresh, meta_a)
    train_row("r", params_from_dict(raw), data / "shards", data / "subsets", tmp_path / "tuned",
              progress=False, track=False, validate=validate)
    assert load_checkpoint(tuned)[1]["init_sha256"] == file_sha256(moved) != meta_b["init_sha256"]

    other = build("resnet18_fpn", HeatmapCodec())
    save_checkpoint(tmp_path / "fpn.pt", other, {**meta_a, "model": "resnet18_fpn"})
    raw["rows"]["r"]["init"] = str(tmp_path / "fpn.pt")
    with pytest.raises(SquatposeError, match=r"fpn\.pt: cannot start row r from it: its resnet18_fpn"):
        train_row("r", params_from_dict(raw), data / "shards", data / "subsets", tmp_path / "refused",
                  progress=False, track=False, validate=validate)
    assert not (tmp_path / "refused" / "model.pt").exists()
