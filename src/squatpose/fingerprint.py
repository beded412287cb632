"""Hashes that decide whether earlier work can be reused: sources of modules, JSON of settings."""

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any


def source_hash(*modules: str) -> str:
    """Hash of the source files of `modules` (a package: its __init__.py)."""
    h = hashlib.sha1()
    for name in modules:
        h.update(name.encode())
        h.update(Path(importlib.import_module(name).__file__).read_bytes())
    return h.hexdigest()


def json_hash(value: Any) -> str:
    """Hash of a JSON-serialisable value (dict keys sorted)."""
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
