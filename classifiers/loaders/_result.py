"""What a load returns: the records, and every row that was skipped and why."""

from __future__ import annotations

from dataclasses import dataclass

from classifiers.records import OutcomeRecord


@dataclass(frozen=True, slots=True)
class BadRow:
    """A malformed row that was skipped: the file, its line (1-based), and what was wrong."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.reason}"


@dataclass(slots=True)
class LoadResult:
    """Records loaded from one or more files, with the rows skipped as malformed."""

    records: list[OutcomeRecord]
    skipped: list[BadRow]
    format: str
    path: str
    # Only load_many sets these: rows dropped because an earlier file had the same id.
    duplicates: int = 0
    files: int = 1

    def summary(self) -> str:
        """One line for logs and the CLI, such as 'loaded 9 rows from x.jsonl (outcomes); ...'."""
        where = self.path if self.files == 1 else f"{self.files} files"
        text = (
            f"loaded {_count(len(self.records), 'row')} from {where} ({self.format}); "
            f"skipped {_count(len(self.skipped), 'bad row')}"
        )
        if self.duplicates:
            text += f"; dropped {_count(self.duplicates, 'duplicate id')} (kept the first)"
        return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
