"""Read a JSONL file of objects, with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import DataError


def json_objects(path: Path, expected: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; `expected` says what an object holds, for errors."""
    if not path.is_file():
        raise DataError(f"{path} does not exist.")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path} line {number}: not valid JSON ({error.msg}).") from None
            if not isinstance(row, dict):
                raise DataError(f"{path} line {number}: expected a JSON object with {expected}.")
            yield number, row
