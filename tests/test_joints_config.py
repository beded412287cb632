import dataclasses
import difflib
import shutil

import pytest
import yaml

from squatpose import joints
from squatpose.config import ModelConfig, Params, load_params, params_from_dict
from squatpose.errors import ConfigError
from tests.conftest import REPO


def test_joint_table_matches_coco_names():
    coco17 = yaml.safe_load("""[nose, left_eye, right_eye, left_ear, right_ear, left_shoulder,
        right_shoulder, left_elbow, right_elbow, left_wrist, right_wrist, left_hip, right_hip,
        left_knee, right_knee, left_ankle, right_ankle]""")
    assert tuple(coco17[i] for i in joints.COCO_INDEX) == joints.NAMES
    assert joints.COCO_KEYPOINTS == tuple(coco17)
    for j, name in enumerate(joints.NAMES):
        mirror = joints.NAMES[joints.FLIP_INDEX[j]]
        assert mirror == name.replace("left", "x").replace("right", "left").replace("x", "right")


def test_params_yaml_names_every_setting_that_config_py_defines():
    """config.py holds every default; params.yaml names every setting (DVC tracks only the keys it
    finds there) with whatever value an experiment gives it: editing a value never fails this."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    params = load_params(REPO / "params.yaml")
    for f in dataclasses.fields(Params):
        value = getattr(params, f.name)
        if dataclasses.is_dataclass(value):
            assert set(raw[f.name]) == {x.name for x in dataclasses.fields(value)}, f.name
    for name in raw["models"]:
        assert set(raw["models"][name]) == {x.name for x in dataclasses.fields(ModelConfig)}, name
    assert raw["model"] in raw["models"] and {r["model"] for r in raw["rows"].values()} <= set(raw["models"])


@pytest.mark.parametrize("override, changed", [
    ("model=dilated", ["model: dilated"]),
    ("models.resnet18.lr_steps=[60,80]", ["    - 60", "    - 80"]),
])
def test_an_experiments_set_param_changes_only_its_own_lines(tmp_path, override, changed):
    """params.yaml is written in the style DVC writes it (block lists, single quotes), so that
    `dvc exp run -S` (DVC's own apply_overrides, used here) leaves a diff of just what changed."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copyfile(REPO / "params.yaml", path)
    apply_overrides(str(path), [override])
    before, after = (REPO / "params.yaml").read_text().splitlines(), path.read_text().splitlines()
    diff = [line for line in difflib.unified_diff(before, after, lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert [line[1:] for line in diff if line.startswith("+")] == changed
    assert len([line for line in diff if line.startswith("-")]) == len(changed)


def test_rows_must_name_a_configured_model_and_subset():
    base = {"models": {"dilated": {}}, "model": "dilated"}
    with pytest.raises(ConfigError, match="rows.x.model is 'resnet'"):
        params_from_dict({**base, "rows": {"x": {"model": "resnet", "subset": "full"}}})
    with pytest.raises(ConfigError, match="rows.x.subset is 'all'"):
        params_from_dict({**base, "rows": {"x": {"model": "dilated", "subset": "all"}}})
    with pytest.raises(ConfigError, match="model is 'resnet18', but no row trains it"):
        params_from_dict({**base, "model": "resnet18", "rows": {"x": {"model": "dilated"}}})


@pytest.mark.parametrize("raw, message", [
    ({"crop": {"paddin": 1.3}}, "unknown key 'paddin'"),
    ({"data": {"source": "imagenet"}}, "data.source is 'imagenet'"),
    ({"codec": {"sigma": "two"}}, "codec.sigma: expected a number"),
    ({"download": {"keep_archives": "yes"}}, "expected true/false"),
    ({"crop": {"width": 190}}, "crop width and height must be multiples of 4"),
    ({"shards": {"shard_size": 0}}, "shards.shard_size must be at least 1"),
    ({"shards": {"subset": "lower"}}, "shards.subset must be one of full, mini, lower60k"),
    ({"codec": {"sigma": 0}}, "codec.sigma must be positive"),
    ({"codec": {"kind": "regression"}}, "codec.kind must be one of heatmap, simcc"),
    ({"codec": {"kind": 1}}, "codec.kind: expected a string"),
    ({"codec": {"decoding": "soft_argmax"}}, "codec.decoding must be one of argmax, quarter, dark"),
    ({"codec": {"stride": 3}}, "codec.stride must be 4 \\(the models' feature stride\\) or 2"),
    ({"codec": {"stride": 8}}, "codec.stride must be 4"),
    ({"codec": {"stride": "4"}}, "codec.stride: expected a number"),
    ({"codec": {"split": 1.7}}, "codec.split must be positive and give a whole number of bins"),
    ({"codec": {"split": 0.3}}, "codec.split must be positive and give a whole number of bins"),
    ({"codec": {"split": 0}}, "codec.split must be positive"),
    ({"codec": {"split": 0.125}, "crop": {"width": 196}}, "whole number of bins"),  # 24.5 x bins (192: 24)
    ({"codec": {"bins": 10}}, "unknown key 'bins'"),
    ({"heatmap": {"sigma": 2.0}}, "unknown section 'heatmap'"),  # the section codec replaced
    ({"evaluate": {"batch_size": 0}}, "evaluate.batch_size must be at least 1"),
    ({"evaluate": {"figure_persons": -1}}, "evaluate.figure_persons must not be negative"),
    ({"evaluate": {"quarter_shift": True}}, "unknown key 'quarter_shift'"),  # now codec.decoding
    ({"subsets": {"mini_size": -1}}, "mini_size must not be negative"),
    ({"shard": {}}, "unknown section 'shard'"),
    ({"models": {"m": {"lr_schedule": "poly"}}}, "models.m.lr_schedule is 'poly'"),
    ({"models": {"m": {"lr_steps": 90}}}, "models.m.lr_steps: expected a list of integers"),
    ({"models": {"m": {"early_stop": -1}}}, "warmup_iters and early_stop not negative"),
    ({"augment": {"flip_prob": 1.5}}, "probabilities in \\[0, 1\\]"),
    ({"augment": {"scale": 1.0}}, "scale must be in \\[0, 1\\)"),
    ({"rows": {"r": {"model": "m", "augment": "yes"}}, "models": {"m": {}}, "model": "m"}, "expected true/false"),
])
def test_bad_params_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        params_from_dict(raw)


def test_codec_settings_that_are_accepted():
    simcc = params_from_dict({"codec": {"kind": "simcc", "split": 0.125, "sigma": 1.5}}).codec
    assert (simcc.kind, simcc.split, simcc.sigma) == ("simcc", 0.125, 1.5)  # 24 x 32 bins for 192 x 256
    fine = params_from_dict({"codec": {"stride": 2, "decoding": "quarter"}, "crop": {"width": 96, "height": 128}})
    assert (fine.codec.stride, fine.codec.decoding, fine.crop.width) == (2, "quarter", 96)
    assert params_from_dict({"codec": {"split": 3}}).codec.split == 3.0  # an integer split is a float
    assert params_from_dict({}).codec == Params().codec


def test_missing_params_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="params.yaml: not found"):
        load_params(tmp_path / "params.yaml")
