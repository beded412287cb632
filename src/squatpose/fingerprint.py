"""Hashes that decide whether earlier work can be reused: sources of modules, JSON of settings.

The code a piece of work depends on is never listed by hand: `project_modules` follows the
package's own imports from an entry point (a module or a stage script), transitively, so a new
import can never leave a stage stale. The DVC stages list the same modules as deps
(tests/test_stage_deps.py checks that dvc.yaml's lists equal these); the reuse hashes
(`code_hash`) cover the modules an entry point imports, less NOT_RESULT_CODE (and, for training,
not the validation passed in: train.code_of_row says why).
"""

import ast
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

PACKAGE = "squatpose"
PACKAGE_DIR = Path(__file__).resolve().parent
# Settings, errors, file writing, run tracking: code that never changes a number. Reuse hashes
# leave them out (settings are hashed as values), so that editing them rebuilds no shards and
# retrains no model; DVC still reruns the stages that import them, which then find their work done.
NOT_RESULT_CODE = frozenset({"squatpose", "squatpose.config", "squatpose.errors", "squatpose.atomic",
                             "squatpose.fingerprint", "squatpose.tracking", "squatpose.device"})


def module_file(name: str) -> Path:
    """The source file of a package module (a package: its __init__.py)."""
    path = PACKAGE_DIR.parent.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _is_module(name: str) -> bool:
    return name.split(".")[0] == PACKAGE and module_file(name).is_file()


def imports_of(source: Path) -> set[str]:
    """The package modules a source file imports anywhere (also inside functions), with the
    packages Python imports on the way (squatpose.models.dilated -> squatpose.models, squatpose)."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in filter(_is_module, names):
            parts = name.split(".")
            found.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return found


def project_modules(*entries: str | Path, skip: Iterable[str] = ()) -> list[str]:
    """The package modules that `entries` (module names, or paths of scripts such as stages/*.py)
    import, transitively, sorted; modules in `skip` are neither included nor followed."""
    skip = set(skip)
    todo = [imports_of(Path(e)) if isinstance(e, Path) else {e} for e in entries]
    seen: set[str] = set()
    pending = set().union(*todo) - skip
    while pending:
        name = pending.pop()
        seen.add(name)
        pending |= imports_of(module_file(name)) - skip - seen
    return sorted(seen)


def code_hash(*entries: str | Path, skip: Iterable[str] = ()) -> str:
    """Hash of the source of every module that shapes what `entries` compute (`project_modules`
    less NOT_RESULT_CODE): edit one, and their results are made again."""
    return source_hash(*(m for m in project_modules(*entries, skip=skip) if m not in NOT_RESULT_CODE))


def source_hash(*modules: str) -> str:
    """Hash of the source files of `modules` (a package: its __init__.py)."""
    h = hashlib.sha1()
    for name in modules:
        h.update(name.encode())
        h.update(module_file(name).read_bytes())
    return h.hexdigest()


def json_hash(value: Any) -> str:
    """Hash of a JSON-serialisable value (dict keys sorted)."""
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
