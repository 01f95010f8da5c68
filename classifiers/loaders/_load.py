"""load_records and load_many: find the file, pick the format, run its reader."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from classifiers.loaders import labels, outcomes, routellm_csv, routerbench
from classifiers.loaders._result import LoadResult
from classifiers.loaders._rows import FORMATS, RowSink, Source
from classifiers.loaders.detect import check_container, container, detect_format, refuse_pickle
from classifiers.loaders.download import fetch, is_url, url_basename
from classifiers.records import OutcomeRecord
from core.errors import DataError

READERS: dict[str, Callable[[Source, RowSink], None]] = {
    "outcomes": outcomes.read,
    "routellm": routellm_csv.read,
    "routerbench": routerbench.read,
    "labels": labels.read,
}


def load_records(
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    skip_bad_rows: bool = False,
    cache_dir: Path | None = None,
) -> LoadResult:
    """Load one data file (a local path or an http(s) URL) in one of FORMATS, or detect it."""
    if format != "auto" and format not in FORMATS:
        raise DataError(
            f"Unknown data format {format!r}. Choose auto or one of: {', '.join(FORMATS)}."
        )
    name = os.fspath(path)
    refuse_pickle(name)
    if is_url(name):
        local, stem = fetch(name, cache_dir), Path(url_basename(name)).stem
    else:
        local = Path(name).expanduser()
        stem = local.stem
        if not local.exists():
            raise DataError(
                f"{name} does not exist. Check the path (relative paths start at {Path.cwd()})."
            )
        if not local.is_file():
            raise DataError(f"{name} is not a file. Pass one data file, or several to load_many.")
    try:
        kind = container(local, name)
        chosen = detect_format(local, kind, name) if format == "auto" else format
        check_container(chosen, kind, name)
        sink = RowSink(name, skip_bad_rows)
        READERS[chosen](Source(local, name, stem, kind), sink)
    except OSError as error:
        raise DataError(f"Cannot read {name} ({error.strerror}). Check its permissions.") from None
    if not sink.records and not sink.skipped:
        raise DataError(f"{name} has no data rows. Add rows, or check that it is the right file.")
    return LoadResult(records=sink.records, skipped=sink.skipped, format=chosen, path=name)


def load_many(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    format: str = "auto",
    skip_bad_rows: bool = False,
    cache_dir: Path | None = None,
) -> LoadResult:
    """Load several files into one result; an id already loaded from an earlier file is dropped."""
    names = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not names:
        raise DataError("No data files given. Pass at least one path or URL.")
    results = [
        load_records(p, format=format, skip_bad_rows=skip_bad_rows, cache_dir=cache_dir)
        for p in names
    ]
    _check_same_tiers(results)
    seen: set[str] = set()
    records: list[OutcomeRecord] = []
    for result in results:
        for record in result.records:
            if record.id not in seen:
                seen.add(record.id)
                records.append(record)
    formats = list(dict.fromkeys(r.format for r in results))
    return LoadResult(
        records=records,
        skipped=[bad for r in results for bad in r.skipped],
        format="+".join(formats),
        path=", ".join(r.path for r in results),
        duplicates=sum(len(r.records) for r in results) - len(records),
        files=len(results),
    )


def _check_same_tiers(results: list[LoadResult]) -> None:
    # A training set whose files disagree on the tiers has no single "cheapest tier".
    first: tuple[str, tuple[str, ...]] | None = None
    for result in results:
        tiers = next((tuple(r.outcomes) for r in result.records if r.outcomes), None)
        if tiers is None:
            continue
        if first is None:
            first = (result.path, tiers)
        elif tiers != first[1]:
            raise DataError(
                f"{result.path} has tiers [{', '.join(tiers)}] but {first[0]} has "
                f"[{', '.join(first[1])}]. Files loaded together must use the same tier names, "
                "cheapest first; rename the tiers or load the files separately."
            )
