from pathlib import Path

from squatpose.config import MlflowConfig
from squatpose.tracking import repo_root, tracking_uri


def test_store_is_the_original_repos_also_from_a_dvc_temp_experiment(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    repo = tmp_path / "proj"
    copy = repo / ".dvc" / "tmp" / "exps" / "tmpa1b2c3"
    copy.mkdir(parents=True)
    assert repo_root(copy) == repo.resolve()
    assert repo_root(repo) == repo.resolve()
    monkeypatch.chdir(copy)
    assert tracking_uri(MlflowConfig()) == f"sqlite:///{repo.resolve() / 'mlflow.db'}"
    assert tracking_uri(MlflowConfig(tracking_uri="http://127.0.0.1:5000")) == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere.db")
    assert tracking_uri(MlflowConfig()) == "sqlite:////elsewhere.db"
