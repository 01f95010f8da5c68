"""Fixtures shared by the classifier tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXPORT = Path(__file__).resolve().parents[2] / "data" / "encoders" / "export.py"


@pytest.fixture(scope="module")
def export() -> ModuleType:
    """data/encoders/export.py, a script rather than a package module, loaded by path."""
    spec = importlib.util.spec_from_file_location("export", EXPORT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
