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


def test_evaluation_of_weights_whose_training_run_is_not_in_the_store(tmp_path, monkeypatch):
    import mlflow

    from squatpose.tracking import log_evaluation

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.json").write_text("{}")
    run_id = log_evaluation(MlflowConfig(), "0ca05332f2344cf28c78790dd43c04a6", {"row": "x", "pck@0.05": 0.5},
                            {"flip_test": False}, [tmp_path / "m.json"], name="shipped model")
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.metrics == {"pck_at_0.05": 0.5} and run.data.tags["evaluate.flip_test"] == "False"
    assert run.data.tags["missing_training_run"] == "0ca05332f2344cf28c78790dd43c04a6"
    assert run.info.run_name == "shipped model" and run.info.status == "FINISHED"
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run_id)] == ["m.json"]
    again = log_evaluation(MlflowConfig(), "0ca05332f2344cf28c78790dd43c04a6", {"pck@0.05": 0.6}, {"flip_test": True},
                           [], name="shipped model")
    assert again == run_id  # a rerun of the same weights' evaluation: the same run, a second point
    history = mlflow.MlflowClient().get_metric_history(run_id, "pck_at_0.05")
    assert sorted(m.value for m in history) == [0.5, 0.6]
    assert mlflow.MlflowClient().get_run(run_id).data.tags["evaluate.flip_test"] == "True"
    other = log_evaluation(MlflowConfig(), "", {"pck@0.05": 0.1}, {}, [], name="shipped model")
    assert other != run_id  # other weights (no run id at all): a run of their own
