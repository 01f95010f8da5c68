"""Reader for plain difficulty labels: CSV or JSON Lines with `prompt` and `difficulty`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from classifiers.loaders._rows import RowProblem, RowSink, Source, csv_header, iter_csv, iter_jsonl
from classifiers.loaders._values import cell_score, optional_text, prompt, show
from classifiers.records import OutcomeRecord, record_id
from core.errors import DataError

DIFFICULTY_FIX = (
    "Write the probability that the cheapest tier fails (e.g. 0.8), "
    "or true for hard and false for easy."
)


def read(src: Source, sink: RowSink) -> None:
    """Parse every row into a record with no outcomes and `difficulty` set."""
    rows: Iterator[tuple[int, Mapping[str, object]]]
    if src.kind == "csv":
        header = csv_header(src)
        absent = [name for name in ("prompt", "difficulty") if name not in header]
        if absent:
            raise DataError(
                f"{src.name} line 1: a labels CSV needs the columns prompt and difficulty, "
                f"but {absent[0]!r} is not in its header ({','.join(header)})."
            )
        rows = iter_csv(src, sink)
    else:
        rows = iter_jsonl(src, sink)
    for line, row in rows:
        try:
            text = prompt(row.get("prompt"))
            difficulty = _difficulty(row.get("difficulty"))
            source = optional_text(row.get("source"), "source") or src.stem
            rid = optional_text(row.get("id"), "id") or record_id(source, text)
        except RowProblem as problem:
            sink.reject(line, problem)
            continue
        sink.accept(line, OutcomeRecord(rid, source, text, outcomes={}, difficulty=difficulty))


def _difficulty(value: object) -> float:
    try:
        return cell_score(value, "difficulty")
    except RowProblem as problem:
        if problem.problem == "missing":
            raise RowProblem("difficulty", "missing", DIFFICULTY_FIX) from None
        raise RowProblem(
            "difficulty",
            f"must be a number in [0, 1] or true/false (hard/easy), got {show(value)}",
            DIFFICULTY_FIX,
        ) from None
