"""Which of the four formats a file is in, from its extension and its first row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from classifiers.loaders._rows import FORMATS
from classifiers.loaders.routellm_csv import model_columns
from core.errors import DataError

JSON_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson"})
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle"})
# outcomes is JSON Lines and routellm is CSV; routerbench and labels can be either.
CONTAINERS = {"outcomes": "jsonl", "routellm": "csv"}
_CONTAINER_NAMES = {"jsonl": "JSON Lines", "csv": "CSV"}


def refuse_pickle(name: str) -> None:
    """Raise DataError for a .pkl/.pickle file: unpickling a file can run arbitrary code."""
    if Path(name.split("?", 1)[0]).suffix.lower() in PICKLE_SUFFIXES:
        raise DataError(
            f"{name} is a Python pickle, and this project never unpickles data files because "
            "loading a pickle can run any code it contains. If you trust the file, convert it "
            'once: python -c "import pandas as pd; '
            f"pd.read_pickle('{name}').to_csv('data.csv', index=False)\" and load data.csv instead."
        )


def container(path: Path, name: str) -> str:
    """'jsonl' or 'csv': by extension, else by the first non-blank character; empty files fail."""
    first = _first_line(path)
    if first is None:
        raise DataError(f"{name} is empty. Point to a file with a header or at least one row.")
    suffix = path.suffix.lower()
    if suffix in JSON_SUFFIXES:
        kind = "jsonl"
    elif suffix == ".csv":
        kind = "csv"
    else:
        kind = "jsonl" if first.startswith(("{", "[")) else "csv"
    if kind == "jsonl" and first.startswith("["):
        raise DataError(
            f"{name} looks like one JSON array; the loaders read JSON Lines (one object per line). "
            "Convert it, e.g. with pandas: "
            "pd.read_json(path).to_json(out, orient='records', lines=True)."
        )
    return kind


def check_container(format: str, kind: str, name: str) -> None:
    """Raise DataError when a format cannot be stored the way the file is (e.g. outcomes as CSV)."""
    wanted = CONTAINERS.get(format)
    if wanted is not None and wanted != kind:
        raise DataError(
            f"{name} looks like {_CONTAINER_NAMES[kind]}, but the {format} format is "
            f"{_CONTAINER_NAMES[wanted]}. Check the file, or pass the right --format."
        )


def detect_format(path: Path, kind: str, name: str) -> str:
    """Guess the format from the first row's keys or the CSV header and first data row."""
    keys, first = _first_row(path, kind)
    if "outcomes" in keys:
        return "outcomes"
    if any(key.endswith("|total_cost") for key in keys):
        return "routerbench"
    if "difficulty" in keys:
        return "labels"
    models = model_columns(keys)
    if (
        kind == "csv"
        and "prompt" in keys
        and models
        and all(str(first.get(m, "")).strip().lower() in ("true", "false") for m in models)
    ):
        return "routellm"
    shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "") if keys else "nothing readable"
    raise DataError(
        f"Cannot tell the format of {name}: its first row has the fields {shown}. Expected one of "
        f"{', '.join(FORMATS)}: outcomes (JSON Lines with an 'outcomes' key), routellm (CSV with "
        "prompt and True/False model columns), routerbench (columns '<model>|total_cost'), "
        "labels (prompt and difficulty). Pass the format with --format; see docs/data-format.md."
    )


def _first_line(path: Path) -> str | None:
    with path.open("rb") as lines:
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
            if text:
                return text
    return None


def _first_row(path: Path, kind: str) -> tuple[list[str], dict[str, object]]:
    if kind == "jsonl":
        try:
            value = json.loads(_first_line(path) or "")
        except json.JSONDecodeError:
            return [], {}
        return (list(value), value) if isinstance(value, dict) else ([], {})
    with path.open(encoding="utf-8-sig", newline="", errors="replace") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, [])
            row = next((r for r in reader if any(c.strip() for c in r)), [])
        except csv.Error:
            return [], {}
    return header, dict(zip(header, row, strict=False))  # a short first row is fine here
