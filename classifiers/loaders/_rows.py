"""Row plumbing shared by the format readers: where rows come from, and what happens to a bad one.

A reader raises `RowProblem` for a malformed row; the `RowSink` either turns it into a
DataError naming the file and line (the default) or records it as a `BadRow` (skip_bad_rows).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from classifiers.loaders._result import BadRow
from classifiers.records import OutcomeRecord
from core.errors import DataError

FORMATS = ("outcomes", "routellm", "routerbench", "labels")

SKIP_HINT = "To skip malformed rows and list them instead, use --skip-bad-rows."


class RowProblem(DataError):
    """One row is malformed: which field, what is wrong, and how to fix it."""

    def __init__(self, field: str | None, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        """`<field>: <problem>`, or just the problem when it concerns the whole row."""
        return f"{self.field}: {self.problem}" if self.field else self.problem


@dataclass(frozen=True, slots=True)
class Source:
    """A data file about to be read."""

    path: Path  # the local file (a cached copy for URLs)
    name: str  # what messages call it: the path or URL the user gave
    stem: str  # the original file's stem, the default `source` of its rows
    kind: str  # "jsonl" or "csv"


@dataclass(slots=True)
class RowSink:
    """Collects the good records of one file and deals with the bad rows."""

    name: str
    skip_bad_rows: bool
    records: list[OutcomeRecord] = field(default_factory=list)
    skipped: list[BadRow] = field(default_factory=list)
    _id_lines: dict[str, int] = field(default_factory=dict)

    def reject(self, line: int, problem: RowProblem) -> None:
        """Raise a DataError for the row, or record it as skipped when skipping bad rows."""
        if not self.skip_bad_rows:
            raise DataError(
                f"{self.name} line {line}: {problem.reason}. {problem.fix} {SKIP_HINT}"
            ) from None
        self.skipped.append(BadRow(self.name, line, problem.reason))

    def accept(self, line: int, record: OutcomeRecord) -> None:
        """Keep a parsed record; a repeated id within the file is a bad row."""
        first = self._id_lines.setdefault(record.id, line)
        if first != line:
            problem = RowProblem(
                "id",
                f"duplicate id {record.id!r} (first used on line {first})",
                "Give each row a unique id, or delete the repeated row.",
            )
            self.reject(line, problem)
            return
        self.records.append(record)


def iter_jsonl(src: Source, sink: RowSink) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (line number, JSON object) for each non-blank line; bad JSON goes to the sink."""
    with src.path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)  # bytes: json detects UTF-8 and a BOM itself
            except json.JSONDecodeError as error:
                sink.reject(number, _bad_json(f"{error.msg} at column {error.colno}"))
                continue
            except UnicodeDecodeError:
                sink.reject(number, _bad_json("the line is not valid UTF-8"))
                continue
            if not isinstance(value, dict):
                problem = RowProblem(
                    None,
                    f"expected a JSON object, got {json_type(value)}",
                    'Each line must be one JSON object, such as {"prompt": "..."}.',
                )
                sink.reject(number, problem)
                continue
            yield number, value


def _bad_json(detail: str) -> RowProblem:
    return RowProblem(
        None,
        f"invalid JSON ({detail})",
        "Each line must be one complete JSON object; check its quotes, commas and brackets.",
    )


def json_type(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def csv_header(src: Source) -> list[str]:
    """The header row of a CSV file; a missing, blank or repeated column name is a DataError."""
    with _open_csv(src) as handle:
        try:
            header = next(csv.reader(handle), [])
        except (csv.Error, UnicodeDecodeError) as error:
            raise DataError(f"{src.name} line 1: cannot read the CSV header ({error}).") from None
    if not any(name.strip() for name in header):
        raise DataError(f"{src.name} line 1: the CSV header is empty. Put the column names first.")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(
            f"{src.name} line 1: column {repeated[0]!r} appears more than once in the header. "
            "Give every column a distinct name."
        )
    return header


def iter_csv(src: Source, sink: RowSink) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line where the row starts, {column: cell}) for each non-blank data row."""
    with _open_csv(src) as handle:
        reader = csv.reader(handle)
        header: list[str] | None = None
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as error:
                # The parser cannot resynchronise after this, so it stops the load.
                raise DataError(
                    f"{src.name} line {start}: the CSV cannot be parsed ({error}). "
                    "Check for an unclosed quote or a binary file."
                ) from None
            if header is None:
                header = row
                continue
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                problem = RowProblem(
                    None,
                    f"expected {len(header)} cells like the header, found {len(row)}",
                    "Quote cells that contain commas, quotes or line breaks.",
                )
                sink.reject(start, problem)
                continue
            yield start, dict(zip(header, row, strict=True))


def _open_csv(src: Source) -> TextIO:
    # newline="" lets the csv module see line breaks inside quoted cells; utf-8-sig drops a BOM.
    return src.path.open(encoding="utf-8-sig", newline="")
