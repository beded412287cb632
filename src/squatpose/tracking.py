"""MLflow: where runs are stored and what each training run records.

Runs go to one store per project, `sqlite:///<repo>/mlflow.db` with artifacts in
`<repo>/mlartifacts/`, found by absolute path, also from the copies of the repository that
`dvc exp run --temp` and `--queue` work in (`<repo>/.dvc/tmp/exps/...`). `MLFLOW_TRACKING_URI`
or `mlflow.tracking_uri` in params.yaml point elsewhere. See them with
`mlflow ui --backend-store-uri sqlite:///mlflow.db`.
"""

import contextlib
import logging
import os
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from squatpose.config import MlflowConfig, Params

log = logging.getLogger(__name__)
EXPS_DIR = os.path.join(".dvc", "tmp", "exps")


def repo_root(start: str | Path | None = None) -> Path:
    """The project root; from inside a DVC experiment's temporary copy, the original's root."""
    path = Path(start or Path.cwd()).resolve()
    text = str(path)
    marker = os.sep + EXPS_DIR + os.sep
    return Path(text.split(marker)[0]) if marker in text else path


def tracking_uri(cfg: MlflowConfig) -> str:
    """Where runs are stored: $MLFLOW_TRACKING_URI, params' mlflow.tracking_uri, or the repo's sqlite file."""
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri or f"sqlite:///{repo_root() / 'mlflow.db'}"


def git_commit() -> str:
    """The commit the code runs at (with '+dirty' for uncommitted changes), or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def experiment_id(cfg: MlflowConfig) -> str:
    """Point MLflow at the store and return the experiment's id, creating it (and its artifact
    folder beside the store) the first time."""
    import mlflow

    for name in ("alembic", "mlflow"):  # schema migrations and store chatter
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    artifacts = None
    if uri.startswith("sqlite:///"):
        artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return mlflow.create_experiment(cfg.experiment, artifact_location=artifacts)


def start_training_run(params: Params, row_name: str, run_id: str | None, train_persons: int):
    """Start (or continue) this row's MLflow run, with its params and tags."""
    import mlflow

    exp = experiment_id(params.mlflow)
    if run_id:
        try:
            return mlflow.start_run(run_id=run_id)
        except mlflow.exceptions.MlflowException:
            log.warning("MLflow run %s of the checkpoint is not in %s; starting a new run",
                        run_id, tracking_uri(params.mlflow))
    row = params.row(row_name)
    run = mlflow.start_run(experiment_id=exp, run_name=row_name, tags={
        "model": row.model, "subset": row.subset, "row": row_name, "data_source": params.data.source,
        "git_commit": git_commit()})
    flat = {"model": row.model, "subset": row.subset, "train_persons": train_persons, "augment": row.augment,
            **({f"augment.{k}": v for k, v in asdict(params.augment).items()} if row.augment else {}),
            **{f"model.{k}": v for k, v in asdict(params.models[row.model]).items()},
            **{f"train.{k}": v for k, v in asdict(params.train).items()},
            **{f"codec.{k}": v for k, v in asdict(params.codec).items()},
            **{f"crop.{k}": v for k, v in asdict(params.crop).items()}}
    mlflow.log_params(flat)
    return run


class TrainingRun:
    """What a training loop records in MLflow: each epoch's entry and the final figures. Without
    an active run (other DDP ranks, `track=False`) it records nothing."""

    def __init__(self, run_id: str | None, active: bool):
        self.id, self.active = run_id, active

    def log_epoch(self, entry: dict) -> None:
        """One epoch's history entry (lr, losses, val PCK@0.05, speed) at step = epoch."""
        if self.active:
            import mlflow

            mlflow.log_metrics({metric_name(k): v for k, v in entry.items() if k not in ("epoch", "samples")},
                               step=entry["epoch"])

    def log_final(self, meta: dict, history_path: str | Path | None = None) -> None:
        """Training time, the epoch model.pt keeps and its val PCK@0.05, from model.pt's metadata;
        the history CSV as an artifact."""
        if self.active:
            import mlflow

            kept, history = meta["kept_epoch"], meta["history"]
            kept_pck = history[kept - 1]["val_pck@0.05"] if history else float("nan")
            mlflow.log_metrics({"train_time_s": meta["train_time_s"], "kept_epoch": kept,
                                metric_name("kept_val_pck@0.05"): kept_pck})
            if history_path and Path(history_path).is_file():
                mlflow.log_artifact(str(history_path))


@contextlib.contextmanager
def training_run(params: Params, row_name: str, run_id: str | None, train_persons: int,
                 enabled: bool = True) -> Iterator[TrainingRun]:
    """The row's MLflow run (a resumed run continues `run_id`) for the duration of the block,
    ended FINISHED, or KILLED (Ctrl-C) / FAILED when the block raises. Disabled: records nothing."""
    if not enabled:
        yield TrainingRun(run_id, active=False)
        return
    import mlflow

    run = start_training_run(params, row_name, run_id, train_persons)
    try:
        yield TrainingRun(run.info.run_id, active=True)
    except BaseException as e:
        mlflow.end_run("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    finally:
        if mlflow.active_run():
            mlflow.end_run()


def metric_name(key: str) -> str:
    """The MLflow name of a metric: the DVC metrics' name with '@' (which MLflow refuses) as '_at_'."""
    return key.replace("@", "_at_")


def log_evaluation(cfg: MlflowConfig, run_id: str, summary: dict, settings: dict, artifacts: list[str | Path],
                   checkpoint: str | Path | None = None, name: str = "evaluation") -> str:
    """Record an evaluation on the row's training run: the summary metrics (evaluate.summary, under
    the names of the DVC metric files), the evaluation settings as `evaluate.*` tags (a
    re-evaluation with other settings updates them and adds a point to each metric), the full
    metrics and the figures as artifacts. Through the client API, so the training run keeps the
    start and end of its training. Weights trained elsewhere (their run is not in this store) get
    a run of their own named `name`, the same one each time. Returns the id of the run written to.
    """
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag
    from mlflow.exceptions import MlflowException

    exp = experiment_id(cfg)
    client = MlflowClient(tracking_uri(cfg))
    own_run = False
    try:
        client.get_run(run_id)
    except MlflowException:  # weights trained elsewhere, or the store was reset
        log.warning("training run %s is not in the MLflow store %s: the evaluation goes into a new run",
                    run_id or "(none)", tracking_uri(cfg))
        # the same weights evaluated again (a rerun of `reference`) write to their run, not a new one
        same = [r for r in client.search_runs([exp], filter_string=f"attributes.run_name = '{name}'")
                if r.data.tags.get("missing_training_run") == run_id]
        run_id = same[0].info.run_id if same else client.create_run(
            exp, run_name=name, tags={"missing_training_run": run_id}).info.run_id
        own_run = True
    now = int(time.time() * 1000)
    metrics = [Metric(metric_name(k), float(v), now, 0) for k, v in summary.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(f"evaluate.{k}", str(v)) for k, v in settings.items()])
    for path in map(Path, artifacts):
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        elif path.is_file():
            client.log_artifact(run_id, str(path))
    if checkpoint:
        client.log_artifact(run_id, str(checkpoint), artifact_path="checkpoint")
    if own_run:
        client.set_terminated(run_id)
    return run_id
