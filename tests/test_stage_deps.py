"""Every DVC stage depends on exactly the package modules its entry point imports, transitively:
a new import can never leave a stage stale, and no stage lists a module it does not use."""

import re
from pathlib import Path

import pytest
import yaml

from squatpose.fingerprint import PACKAGE_DIR, module_file, project_modules
from squatpose.models import ARCHITECTURES
from tests.conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def listed(deps: list[str], model: str) -> set[Path]:
    """The package source files a stage's deps name (a folder: every .py file in it)."""
    files = set()
    for dep in deps:
        path = REPO / dep.replace("${item.model}", model)
        if path.is_dir():
            files |= set(path.rglob("*.py"))
        elif path.suffix == ".py" and PACKAGE_DIR in path.parents:
            files.add(path)
    return files


def cases() -> list[tuple[str, str]]:
    """(stage, architecture): a per-row stage once per architecture, the others once."""
    return [(name, model) for name, stage in STAGES.items()
            for model in (ARCHITECTURES if "item.model" in str(stage) else ["-"])]


@pytest.mark.parametrize("name, model", cases())
def test_stage_deps_are_the_modules_its_script_imports(name, model):
    stage = STAGES[name].get("do", STAGES[name])
    script = re.search(r"python (stages/\w+\.py)", stage["cmd"]).group(1)
    assert script in stage["deps"], f"{name}: its script {script} is not a dep"
    per_row = model != "-"
    others = [f"squatpose.models.{a}" for a in ARCHITECTURES if a != model] if per_row else []
    needed = {module_file(m) for m in project_modules(REPO / script, skip=others)}
    deps = listed(stage["deps"], model)
    missing = sorted(str(p.relative_to(REPO)) for p in needed - deps)
    assert not missing, f"{name}: imported but not in dvc.yaml's deps: {missing}"
    if per_row:  # another architecture's file must not rerun this row
        assert not deps & {module_file(m) for m in others}, f"{name}: depends on other architectures"
    unused = sorted(str(p.relative_to(REPO)) for p in deps - needed
                    if not any(p.is_relative_to(REPO / d) for d in stage["deps"] if (REPO / d).is_dir()))
    assert not unused, f"{name}: listed in dvc.yaml's deps but not imported: {unused}"


def test_imports_are_followed_through_functions_and_packages(tmp_path):
    """A lazy import inside a function counts, and importing a submodule brings its packages."""
    script = tmp_path / "entry.py"
    script.write_text("def f():\n    from squatpose.squat.reps import Rep\n")
    found = project_modules(script)
    assert {"squatpose", "squatpose.squat", "squatpose.squat.reps"} <= set(found)
    assert "squatpose.train" not in found


def test_the_data_stages_do_not_import_torch():
    """download, subsets and shards (and the shard workers) stay ~120 MB a process: torch alone is ~500 MB."""
    import subprocess
    import sys

    for script in ("stages/download.py", "stages/subsets.py", "stages/shards.py"):
        found = project_modules(REPO / script)
        code = "import sys; " + "; ".join(f"import {m}" for m in found) + "; print('torch' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
        assert out.stdout.strip() == "False", f"{script} imports torch"
