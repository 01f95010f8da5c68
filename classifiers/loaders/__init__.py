"""Data loaders: read routing outcomes or difficulty labels from the formats in docs/data-format.md.

load_records("outcomes.jsonl")                   # format detected from the file
load_records(url, format="routellm")             # http(s) URLs are downloaded and cached
load_many([a, b], skip_bad_rows=True)  # bad rows are listed in .skipped, never dropped
"""

from __future__ import annotations

from classifiers.loaders._load import load_many, load_records
from classifiers.loaders._result import BadRow, LoadResult
from classifiers.loaders._rows import FORMATS

__all__ = ["FORMATS", "BadRow", "LoadResult", "load_many", "load_records"]
