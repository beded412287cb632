"""`dvc repro` in a real DVC repository in a temp dir, on the embedded sample, offline."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from squatpose.dataset import ShardDataset
from squatpose.subsets import subset_path
from tests.conftest import REPO, ann_path, free_port, load_json, raw_counts

pytestmark = pytest.mark.slow


def sh(repo: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh_env(repo, {}, *cmd, check=check)


def sh_env(repo: Path, extra_env: dict, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `cmd` in `repo` with its src/ and this Python's tools first, plus `extra_env`."""
    env = dict(os.environ, PYTHONPATH=str(repo / "src"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra_env)
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("dvcrepo")
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        shutil.copy2(REPO / name, repo / name)
    for name in ("stages", "src", "data/sample"):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # one epoch per architecture (two for the fast dilated net, so its plots have lines): this tests
    # the pipeline, not learning
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for name, cfg in params["models"].items():
        cfg["epochs"] = EPOCHS.get(name, 1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    shutil.copy2(REPO / ".dvc" / "config", repo / ".dvc" / "config")  # offline plots page (html_template)
    shutil.copytree(REPO / ".dvc" / "plots", repo / ".dvc" / "plots", ignore=shutil.ignore_patterns("node_modules"))
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    FIRST_REPRO["stdout"] = sh(repo, "dvc", "repro").stdout
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "reproduced")
    return repo


FIRST_REPRO: dict[str, str] = {}
EPOCHS = {"dilated": 2}


@pytest.fixture
def work(repo, tmp_path) -> Path:
    """A copy of the reproduced repository for one test to change: no test sees another's edits."""
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy, symlinks=True, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    return copy  # its own MLflow store (the original's names the original's artifact folder)


STAGE_ROWS = ["resnet18-mini", "resnet18_fpn-full", "resnet18_fpn-lower60k", "dilated-lower60k",
              "resnet18_fpn_attn-lower60k"]
STAGES = ["download", "subsets", "shards@train", "shards@val", "reference", "report"] + [
    f"{stage}@{row}" for stage in ("train", "evaluate") for row in STAGE_ROWS]


def test_repro_runs_every_stage_and_a_second_repro_does_nothing(repo):
    for stage in STAGES:
        assert f"Running stage '{stage}'" in FIRST_REPRO["stdout"]
    assert "Data and pipelines are up to date." in sh(repo, "dvc", "status").stdout
    second = sh(repo, "dvc", "repro")
    assert "Running stage" not in second.stdout
    assert second.stdout.count("didn't change, skipping") == len(STAGES)

    counts = load_json(repo / "metrics" / "subsets.json")
    for split in ("train", "val"):
        raw = raw_counts(load_json(ann_path(repo / "data" / "sample", split)))
        assert counts[split]["full"] == raw["full"] and counts[split]["lower60k"] == raw["lower60k"]
        ds = ShardDataset.from_subset(repo / "data" / "shards" / "sample" / split,
                                      subset_path(repo / "data" / "subsets" / "sample", split, "lower60k"))
        assert len(ds) == raw["lower60k"] and ds.missing == 0
    # `dvc metrics show`: per row what a user compares, no wall-clock figures, no counts; the
    # headline under names of its own
    header = sh(repo, "dvc", "metrics", "show").stdout.splitlines()[0]
    assert set(header.split()) == {"Path", "ap", "knee_mae_deg", "pck@0.05", "pck@0.1"} | {
        f"headline.{k}" for k in ("ap", "knee_mae_deg", "pck@0.05", "pck@0.1")}
    shown = sh(repo, "dvc", "metrics", "show", "metrics/rows", "metrics/reference.json").stdout  # the README's
    header, *lines = shown.strip().splitlines()
    assert header.split() == ["Path", "ap", "knee_mae_deg", "pck@0.05", "pck@0.1"]
    assert sorted(line.split()[0] for line in lines) == sorted(
        ["metrics/reference.json"] + [f"metrics/rows/{r}.json" for r in STAGE_ROWS])
    assert all(len(line.split()) == 5 for line in lines) and max(map(len, shown.splitlines())) <= 100

    # the results table: a row per model and subset, metrics that are numbers
    table = pd.read_csv(repo / "metrics" / "results.csv")
    assert table["row"].tolist() == ["resnet18-mini", "resnet18_fpn-full", "resnet18_fpn-lower60k",
                                     "dilated-lower60k", "resnet18_fpn_attn-lower60k",
                                     "shipped (reference, not retrained)"]
    # the shipped model, evaluated on every val person at its own crop size, beats 1-epoch models
    reference, trained = table.iloc[-1], table.iloc[:-1]
    assert reference["subset"] == "full" and reference["val_persons"] == table.loc[1, "val_persons"]
    assert reference["pck@0.1"] > trained["pck@0.1"].max()
    assert (repo / "metrics" / "figures" / "reference" / "predictions.png").stat().st_size > 10_000
    table = trained
    assert table["pck@0.05"].between(0, 1).all() and (table["params (M)"] > 0).all()
    assert table.loc[table["subset"] == "lower60k", "val_persons"].eq(22).all()
    assert "| resnet18-mini | resnet18 | mini |" in (repo / "metrics" / "results.md").read_text()
    headline = load_json(repo / "metrics" / "metrics.json")
    assert headline == {"headline": load_json(repo / "metrics" / "rows" / "resnet18-mini.json")}
    for row in table["row"]:
        assert (repo / "metrics" / "figures" / row / "predictions.png").stat().st_size > 10_000
        epochs = EPOCHS.get(row.split("-")[0], 1)
        assert len((repo / "metrics" / "history" / f"{row}.csv").read_text().splitlines()) == 1 + epochs
    history = pd.read_csv(repo / "metrics" / "history.csv")
    assert history["row"].tolist() == [r for r in STAGE_ROWS for _ in range(EPOCHS.get(r.split("-")[0], 1))]
    assert "samples_per_s" not in history
    # every training run is in the repo's MLflow store, with its evaluation on it
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("squatpose").experiment_id])
    training = [r for r in runs if "missing_training_run" not in r.data.tags]
    [shipped] = [r for r in runs if "missing_training_run" in r.data.tags]
    assert shipped.data.tags["missing_training_run"] == (torch.load(
        repo / "src" / "squatpose" / "weights" / "lower_body.pt", weights_only=True)["meta"].get("mlflow_run_id") or "")
    assert shipped.data.metrics["pck_at_0.1"] == pytest.approx(reference["pck@0.1"])
    assert sorted(r.data.tags["row"] for r in training) == sorted(table["row"])
    for r in training:
        summary = load_json(repo / "metrics" / "rows" / f"{r.data.tags['row']}.json")
        assert r.data.metrics["pck_at_0.05"] == pytest.approx(summary["pck@0.05"]) and r.info.status == "FINISHED"
    # each run lasts its own training: rows train one after another, so no two runs overlap
    spans = sorted((r.info.start_time, r.info.end_time) for r in training)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))


def test_plots_page_draws_every_row_in_one_chart_per_quantity_offline(repo, tmp_path):
    """`dvc plots show` (dvc.yaml's top-level plots, .dvc/plots/rows.json) in a real browser with
    the network cut off: four charts, each with a line in every row's colour."""
    from tests.browser import browser_page, pixels_of, screenshot

    if "{scripts}" in (repo / ".dvc" / "plots" / "offline.html").read_text() and not os.environ.get("CI"):
        pytest.skip("set-up found no npm here, so the plot page loads vega online (CI has npm)")
    out = sh(repo, "dvc", "plots", "show", "-o", str(tmp_path / "plots")).stdout
    page_html = (tmp_path / "plots" / "index.html").read_text()
    assert "<script src=" not in page_html and "cdn.jsdelivr" not in page_html, out
    for title in ("val PCK@0.05", "val loss", "train loss", "learning rate"):
        assert f'"text": "{title}"' in page_html or f'"title": "{title}"' in page_html, title
    with browser_page(1100, 1500) as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((tmp_path / "plots" / "index.html").as_uri())
        page.wait_for_function("document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= 4")
        image = screenshot(page, "dvc-plots")
    assert not errors
    assert (image < 250).any(axis=2).mean() > 0.02  # not a blank page
    # vega's first five colours, rows in name order: each row is drawn (legend and points, ~300
    # pixels), and dilated-lower60k (2 epochs) has a line in each of the four charts
    colours = dict(zip(sorted(STAGE_ROWS), ("4c78a8", "f58518", "e45756", "72b7b2", "54a24b")))
    for row, colour in colours.items():
        assert pixels_of(image, colour) > 150, row
    assert pixels_of(image, colours["dilated-lower60k"]) > 1000


def test_mlflow_ui_lists_every_row_with_its_pck(repo):
    """`mlflow server` on the repo's store, in a real browser: the README's link opens the runs
    table; choosing the column pck_at_0.05 (Columns, as a user does) shows every row's value."""
    from tests.browser import browser_page, screenshot

    client_uri = f"sqlite:///{repo / 'mlflow.db'}"
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=client_uri)
    exp = client.get_experiment_by_name("squatpose")
    expected = {r.info.run_name: r.data.metrics["pck_at_0.05"] for r in client.search_runs([exp.experiment_id])}
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
                               "--port", str(port), "--backend-store-uri", client_uri, "--workers", "1"],
                              cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server)
        with browser_page() as page:
            page.goto(f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning")
            page.get_by_text("resnet18-mini", exact=True).first.wait_for(timeout=60_000)
            page.get_by_role("button", name="Columns").click()
            page.get_by_placeholder("Search columns").fill("pck_at_0.05")
            # the item whose whole label is pck_at_0.05 (the search also lists val_pck_at_0.05)
            page.locator("span[title]").filter(has_text=re.compile(r"^pck_at_0\.05$")).first.click()
            page.keyboard.press("Escape")
            cell = page.locator(f"[role=gridcell][col-id='{PCK_COLUMN}']").first
            cell.wait_for(timeout=30_000)
            rows = page.evaluate(ROWS_JS)
            close = page.get_by_role("button", name="Close")  # the assistant panel, for the screenshot
            if close.count():
                close.click()
            cell.scroll_into_view_if_needed()
            screenshot(page, "mlflow-runs")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert len(rows) == len(expected)
    for name, pck in expected.items():
        [row] = [r for r in rows if r["name"].splitlines()[-1] == name]  # after the colour swatch's label
        assert float(row["pck"]) == pytest.approx(pck), (name, row)


PCK_COLUMN = "metrics.`pck_at_0.05`"
# each table row's run name and PCK cell (ag-grid draws the pinned name column in a row element of its own)
ROWS_JS = """() => {
  const rows = {};
  for (const r of document.querySelectorAll('[role=row][row-index]')) {
    const row = rows[r.getAttribute('row-index')] ??= {name: null, pck: null};
    const name = r.querySelector("[col-id='attributes.`Run Name`']");
    const pck = r.querySelector("[col-id='%s']");
    if (name) row.name = name.innerText.trim();
    if (pck) row.pck = pck.innerText.trim();
  }
  return Object.values(rows);
}""" % PCK_COLUMN


def wait_for_port(port: int, server: subprocess.Popen, seconds: float = 90) -> None:
    """Until `server` answers HTTP on `port` (it fails the test if it exits or takes too long)."""
    import time
    import urllib.request

    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return
        except OSError:
            assert server.poll() is None and time.time() < deadline, "mlflow server did not start"
            time.sleep(0.5)


def test_exp_run_switches_the_headline_model_without_retraining(work):
    out = sh(work, "dvc", "exp", "run", "-S", "model=dilated").stdout
    assert "Running stage 'report'" in out
    assert "Running stage 'train" not in out and "Running stage 'evaluate" not in out
    assert load_json(work / "metrics" / "metrics.json")["headline"] == load_json(work / "metrics" / "rows" / "dilated-lower60k.json")
    shown = sh(work, "dvc", "exp", "show", "--json").stdout
    assert "dilated-lower60k" in shown
    # what changed fits a terminal: the param and the headline metrics, not every row's file
    changed = sh(work, "dvc", "exp", "show", "--only-changed", "--csv").stdout.splitlines()[0].split(",")
    assert "model" in changed and "headline.pck@0.05" in changed, changed
    table = sh_env(work, {"COLUMNS": "140"}, "dvc", "exp", "show", "--only-changed", "--no-pager").stdout
    assert "headline.knee_mae_deg" in table and "…" not in table, table  # no column left out at 140


def test_an_architectures_hyperparameter_retrains_only_its_rows(work):
    original = (work / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["models"]["dilated"]["epochs"] = 20
    params["train"]["workers"] = 2  # not a weight-changing setting: retrains nothing
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert sorted(json.loads(sh(work, "dvc", "status", "--json").stdout)) == ["train@dilated-lower60k"]
    finally:
        (work / "params.yaml").write_text(original)


def test_a_failing_stage_keeps_its_last_good_outputs(work):
    metrics = work / "metrics"
    outputs = [metrics / "results.md", metrics / "results.csv", metrics / "metrics.json", metrics / "reference.json",
               metrics / "rows" / "dilated-lower60k.json", metrics / "figures" / "dilated-lower60k" / "predictions.png",
               metrics / "figures" / "reference" / "predictions.png"]
    before = {p: p.read_bytes() for p in outputs}
    original = (work / "params.yaml").read_text()
    try:
        for key, value, message in [("evaluate", {"batch_size": 0}, "evaluate.batch_size must be at least 1"),
                                    ("model", "mobilenet", "model is 'mobilenet', but no row trains it")]:
            params = yaml.safe_load(original)
            params[key] = {**params[key], **value} if isinstance(value, dict) else value
            (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            failed = sh(work, "dvc", "repro", check=False)
            assert failed.returncode != 0 and message in failed.stdout + failed.stderr
            assert {p: p.read_bytes() for p in outputs} == before
    finally:
        (work / "params.yaml").write_text(original)
    assert "Data and pipelines are up to date." in sh(work, "dvc", "status").stdout


def test_bad_annotation_stops_with_one_line_and_keeps_finished_outputs(work):
    ann = ann_path(work / "data" / "sample", "val")
    good = ann.read_bytes()
    before = {p.name: p.read_bytes() for p in (work / "data" / "subsets" / "sample").iterdir()}
    ann.write_text('{"images": []}')
    proc = sh(work, "dvc", "repro", check=False)
    assert proc.returncode != 0
    errors = [l for l in proc.stderr.splitlines() + proc.stdout.splitlines() if l.startswith("error:")]
    assert errors == ["error: data/raw/sample/annotations/person_keypoints_val2017.json: "
                      "not COCO keypoints: missing list 'annotations'"]
    assert "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in (work / "data" / "subsets" / "sample").iterdir()} == before
    assert (work / "metrics" / "subsets.json").exists()
    ann.write_bytes(good)
    sh(work, "dvc", "repro")
    assert "Data and pipelines are up to date." in sh(work, "dvc", "status").stdout


def test_a_codec_param_retrains_without_new_shards_and_a_crop_param_reruns_the_shards(work):
    """Shards hold crops and keypoints, no targets: the codec (sigma here) reruns training and
    evaluation, never the shards; the crop settings rerun the shards (and so the training)."""
    rows = ["resnet18-mini", "resnet18_fpn-full", "resnet18_fpn-lower60k", "dilated-lower60k",
            "resnet18_fpn_attn-lower60k"]
    index = work / "data" / "shards" / "sample" / "val" / "index.json"
    before = load_json(index)
    assert "heatmap" not in before and "codec" not in before
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["codec"]["sigma"] = 3.0
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert sorted(json.loads(sh(work, "dvc", "status", "--json").stdout)) == sorted(f"train@{r}" for r in rows)
    out = sh(work, "dvc", "repro", "evaluate@dilated-lower60k").stdout
    assert "Running stage 'train@dilated-lower60k'" in out and "Running stage 'evaluate@dilated-lower60k'" in out
    assert "Running stage 'shards@" not in out and "Running stage 'subsets'" not in out
    assert load_json(index) == before  # the very same shards
    ckpt = torch.load(work / "checkpoints" / "dilated-lower60k" / "model.pt", weights_only=True)
    assert ckpt["meta"]["codec"]["sigma"] == 3.0
    params["crop"]["padding"] = 1.3
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(sh(work, "dvc", "status", "--json").stdout)
    # the shards; and from the sigma change, the rows not retrained yet and the report of the
    # re-evaluated row: no evaluation, no subsets
    assert sorted(status) == sorted(["shards@train", "shards@val", "report"]
                                    + [f"train@{r}" for r in rows if r != "dilated-lower60k"])
    out = sh(work, "dvc", "repro", "shards@train", "shards@val").stdout
    assert "Running stage 'subsets'" not in out and "Running stage 'shards@val'" in out
    # the training rows now read changed shards: DVC knows they are out of date
    assert sum(k.startswith("train@") for k in json.loads(sh(work, "dvc", "status", "--json").stdout)) == 5
    assert load_json(index)["crop"]["padding"] == 1.3


def _own_dataset(root: Path) -> dict[str, str]:
    """The sample as a user's own export outside the repository: other folder names, a labeling
    tool's skeleton (only the six joints, in another order), and one training person fewer (the
    first with all six joints labeled: other data than the sample's). Returns the dvc -S values."""
    order = ["left_ankle", "right_ankle", "left_knee", "right_knee", "left_hip", "right_hip"]
    paths = {}
    for split in ("train", "val"):
        data = load_json(ann_path(REPO / "data" / "sample", split))
        coco = data["categories"][0]["keypoints"]
        if split == "train":
            legs = [coco.index(n) for n in order]
            dropped = next(a for a in data["annotations"]
                           if not a.get("iscrowd") and all(a["keypoints"][3 * k + 2] > 0 for k in legs))
            data["annotations"].remove(dropped)
        for ann in data["annotations"]:
            ann["keypoints"] = [v for n in order for v in ann["keypoints"][3 * coco.index(n): 3 * coco.index(n) + 3]]
        data["categories"][0]["keypoints"] = order
        (root / f"export-{split}").mkdir(parents=True)
        (root / f"export-{split}" / "labels.json").write_text(json.dumps(data))
        shutil.copytree(REPO / "data" / "sample" / f"{split}2017", root / f"photos-{split}")
        paths[f"data.{split}_annotations"] = str(root / f"export-{split}" / "labels.json")
        paths[f"data.{split}_images"] = str(root / f"photos-{split}")
    return paths


def test_own_coco_format_data_in_one_command(work, tmp_path):
    """README: `dvc exp run -S data.source=coco_dir -S data.train_annotations=... ...` trains every row
    on a COCO-format dataset that lives outside the repository; a broken file stops with one line."""
    paths = _own_dataset(tmp_path)
    args = ["-S", "data.source=coco_dir"] + [a for k, v in paths.items() for a in ("-S", f"{k}={v}")]
    out = sh(work, "dvc", "exp", "run", *args).stdout
    assert "Running stage 'train@dilated-lower60k'" in out and "Running stage 'report'" in out
    counts = load_json(work / "metrics" / "subsets.json")
    for split, fewer in (("train", 1), ("val", 0)):
        raw = raw_counts(load_json(ann_path(work / "data" / "sample", split)))
        assert counts[split]["full"] == raw["full"] - fewer and counts[split]["lower60k"] == raw["lower60k"] - fewer
    meta = torch.load(work / "checkpoints" / "dilated-lower60k" / "model.pt", weights_only=True)["meta"]
    assert meta["data_source"] == "coco_dir" and meta["train_persons"] == raw_counts(
        load_json(ann_path(REPO / "data" / "sample", "train")))["lower60k"] - 1
    table = pd.read_parquet(work / "data" / "subsets" / "coco_dir" / "val-full.parquet")
    assert table["image_path"].str.startswith(str(tmp_path / "photos-val")).all()
    rows = pd.read_csv(work / "metrics" / "results.csv")["row"].tolist()
    assert len(rows) == 6 and rows[-1] == "shipped (reference, not retrained)"  # 5 trained rows and the reference
    # edited labels are seen (the annotation files are DVC dependencies)
    labels = Path(paths["data.val_annotations"])
    labels.write_text(labels.read_text().replace('"left_ankle"', '"ankle_l"', 1))
    proc = sh(work, "dvc", "exp", "run", *args, check=False)
    errors = [l for l in (proc.stderr + proc.stdout).splitlines() if l.startswith("error:")]
    assert proc.returncode != 0 and errors == [
        f"error: {labels}: not COCO keypoints: categories: 'person' keypoints lack left_ankle "
        "(needs left_hip, right_hip, left_knee, right_knee, left_ankle, right_ankle) "
        "(params.yaml: data.val_annotations)"]
    assert load_json(work / "metrics" / "subsets.json") == counts
