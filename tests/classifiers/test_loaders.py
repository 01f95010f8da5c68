"""Tests for classifiers.loaders: every format, every kind of bad row, detection, and downloads."""

from __future__ import annotations

import csv
import hashlib
import http.server
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

import classifiers.loaders as loaders
from classifiers.loaders import BadRow, LoadResult, load_many, load_records
from classifiers.records import OutcomeRecord, TierOutcome, record_id
from core.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHARED_OUTCOMES = SHARED_DATA / "routellm" / "outcomes.jsonl"


# ---------------------------------------------------------------- helpers that write small files


def write_jsonl(path: Path, rows: list[object]) -> Path:
    """One line per row: dicts and lists as JSON, strings written verbatim (for broken lines)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def row(
    prompt: str, weak: object = True, strong: object = True, **extra: object
) -> dict[str, object]:
    return {
        "prompt": prompt,
        "outcomes": {"weak": {"correct": weak}, "strong": {"correct": strong}},
        **extra,
    }


def bad_row_cases() -> list[object]:
    """(line 3 of an outcomes file, text the error must contain): one per kind of malformed row."""
    cases: list[tuple[str, object, str]] = [
        ("bad-json", '{"prompt": "x", "outcomes": ', "invalid JSON"),
        ("not-an-object", "[1, 2]", "expected a JSON object, got an array"),
        (
            "missing-prompt",
            {"outcomes": {"weak": {"correct": True}, "strong": {"correct": True}}},
            "prompt: missing",
        ),
        ("empty-prompt", row("   "), "prompt: is empty"),
        ("prompt-not-string", row(7), "prompt: must be a string"),  # type: ignore[arg-type]
        (
            "correct-not-bool",
            row("q3", weak="yes"),
            "outcomes.weak.correct: must be true/false or a number in [0, 1]",
        ),
        (
            "correct-out-of-range",
            row("q3", strong=1.5),
            "outcomes.strong.correct: must be true/false",
        ),
        (
            "unknown-outcome-key",
            {"prompt": "q3", "outcomes": {"weak": {"corect": True}, "strong": {"correct": True}}},
            'outcomes.weak.corect: unknown key. Did you mean "correct"?',
        ),
        (
            "missing-correct",
            {"prompt": "q3", "outcomes": {"weak": {"model": "m"}, "strong": {"correct": True}}},
            "outcomes.weak.correct: missing",
        ),
        (
            "inconsistent-tiers",
            {"prompt": "q3", "outcomes": {"weak": {"correct": True}, "mid": {"correct": True}}},
            "outcomes: has tiers [weak, mid] but line 1 has [weak, strong]",
        ),
        (
            "tiers-reordered",
            {"prompt": "q3", "outcomes": {"strong": {"correct": True}, "weak": {"correct": True}}},
            "outcomes: has tiers [strong, weak]",
        ),
        ("missing-outcomes", {"prompt": "q3"}, "outcomes: missing"),
        ("empty-outcomes", {"prompt": "q3", "outcomes": {}}, "outcomes: has no tiers"),
        (
            "negative-tokens",
            {
                "prompt": "q3",
                "outcomes": {"weak": {"correct": 1, "input_tokens": -1}, "strong": {"correct": 0}},
            },
            "outcomes.weak.input_tokens: must be a whole number >= 0",
        ),
        (
            "cost-as-text",
            {
                "prompt": "q3",
                "outcomes": {"weak": {"correct": 1, "cost_usd": "0.1"}, "strong": {"correct": 0}},
            },
            "outcomes.weak.cost_usd: must be a number >= 0",
        ),
        ("id-not-string", row("q3", id=17), "id: must be a string"),
        ("duplicate-id", row("q3", id="first"), "id: duplicate id 'first' (first used on line 1)"),
    ]
    return [pytest.param(bad, expected, id=name) for name, bad, expected in cases]


def outcomes_file_with_bad_line_3(tmp_path: Path, bad: object) -> Path:
    return write_jsonl(tmp_path / "data.jsonl", [row("q1", id="first"), row("q2"), bad, row("q4")])


# ---------------------------------------------------------------- the public surface


def test_all_is_exactly_the_public_surface() -> None:
    assert sorted(loaders.__all__) == [
        "BadRow",
        "FORMATS",
        "LoadResult",
        "load_many",
        "load_records",
    ]
    assert loaders.FORMATS == ("outcomes", "routellm", "routerbench", "labels")


def test_bad_row_and_summary_text() -> None:
    bad = BadRow(
        "file.jsonl", 17, "outcomes.weak.correct: must be true/false or a number in [0, 1]"
    )
    assert (
        str(bad)
        == "file.jsonl line 17: outcomes.weak.correct: must be true/false or a number in [0, 1]"
    )
    result = LoadResult(records=[], skipped=[bad, bad], format="outcomes", path="x.jsonl")
    assert result.summary() == "loaded 0 rows from x.jsonl (outcomes); skipped 2 bad rows"
    merged = LoadResult(
        records=[], skipped=[bad], format="outcomes", path="a, b", duplicates=1, files=2
    )
    assert merged.summary() == (
        "loaded 0 rows from 2 files (outcomes); skipped 1 bad row; "
        "dropped 1 duplicate id (kept the first)"
    )


# ---------------------------------------------------------------- outcomes JSONL


def test_outcomes_loads_every_field(tmp_path: Path) -> None:
    full = {
        "id": "abc",
        "source": "gsm8k",
        "prompt": "  2 + 2?\n",
        "metadata": {"anything": [1, 2]},
        "outcomes": {
            "small": {
                "correct": False,
                "model": "m-small",
                "input_tokens": 10,
                "output_tokens": 5,
                "cost_usd": 0.0001,
                "latency_s": 0.25,
            },
            "medium": {"correct": 0.5},
            "large": {"correct": 1, "model": None},
        },
    }
    minimal = {
        "prompt": "Name a prime.",
        "outcomes": {
            "small": {"correct": True},
            "medium": {"correct": 0},
            "large": {"correct": True},
        },
    }
    path = tmp_path / "my_set.jsonl"
    path.write_text(json.dumps(full) + "\n\n   \n" + json.dumps(minimal) + "\n", encoding="utf-8")

    result = load_records(path)

    assert result.format == "outcomes"
    assert result.path == str(path)
    assert result.skipped == []
    first, second = result.records
    assert first == OutcomeRecord(
        id="abc",
        source="gsm8k",
        prompt="  2 + 2?\n",  # kept exactly: ids hash the prompt byte for byte
        outcomes={
            "small": TierOutcome(0.0, "m-small", 10, 5, 0.0001, 0.25),
            "medium": TierOutcome(0.5),
            "large": TierOutcome(1.0),
        },
    )
    assert list(first.outcomes) == ["small", "medium", "large"]
    assert second.source == "my_set"  # the file stem when "source" is absent
    assert second.id == record_id("my_set", "Name a prime.")
    assert second.difficulty is None
    assert result.summary() == f"loaded 2 rows from {path} (outcomes); skipped 0 bad rows"


@pytest.mark.parametrize(("bad", "expected"), bad_row_cases())
def test_outcomes_bad_row_raises_naming_file_and_line(
    tmp_path: Path, bad: object, expected: str
) -> None:
    path = outcomes_file_with_bad_line_3(tmp_path, bad)
    with pytest.raises(DataError) as caught:
        load_records(path)
    message = str(caught.value)
    assert message.startswith(f"{path} line 3: ")
    assert expected in message
    assert "--skip-bad-rows" in message


@pytest.mark.parametrize(("bad", "expected"), bad_row_cases())
def test_outcomes_bad_row_is_skipped_and_reported(
    tmp_path: Path, bad: object, expected: str
) -> None:
    path = outcomes_file_with_bad_line_3(tmp_path, bad)
    result = load_records(path, skip_bad_rows=True)
    assert [r.prompt for r in result.records] == ["q1", "q2", "q4"]
    assert len(result.skipped) == 1
    skipped = result.skipped[0]
    assert (skipped.path, skipped.line) == (str(path), 3)
    assert expected.split(". ")[0] in skipped.reason
    assert "skipped 1 bad row" in result.summary()


def test_first_bad_row_is_the_one_reported(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [row("q1"), row(""), "{oops", row("q4", weak="no")])
    with pytest.raises(DataError, match=r"d\.jsonl line 2: prompt: is empty"):
        load_records(path)
    result = load_records(path, skip_bad_rows=True)
    assert [(b.line, b.reason.split(":")[0]) for b in result.skipped] == [
        (2, "prompt"),
        (3, "invalid JSON (Expecting property name enclosed in double quotes at column 2)"),
        (4, "outcomes.weak.correct"),
    ]
    assert len(result.records) == 1
    assert result.summary().endswith("skipped 3 bad rows")


def test_outcomes_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        "\n" + json.dumps(row("q1")) + "\n\n\n" + json.dumps(row("q2", weak=2)) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"d\.jsonl line 5: outcomes\.weak\.correct"):
        load_records(path)


def test_outcomes_invalid_utf8_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(row("q1")).encode() + b'\n{"prompt": "\xff\xfe"}\n')
    result = load_records(path, format="outcomes", skip_bad_rows=True)
    assert [(b.line, b.reason) for b in result.skipped] == [
        (2, "invalid JSON (the line is not valid UTF-8)")
    ]


# ---------------------------------------------------------------- RouteLLM CSV

# The first rows of RouteLLM's gsm8k_responses.csv in its raw shape (responses shortened); the
# ids are those of the same prompts in the shared outcomes.jsonl.
GSM8K_RAW = (
    "prompt,mixtral-8x7b-instruct-v0.1,gpt-4-1106-preview,"
    "mixtral-8x7b-instruct-v0.1_response,gpt-4-1106-preview_response\n"
    "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and "
    "bakes muffins for her friends every day with four. She sells the remainder at the farmers' "
    "market daily for $2 per fresh duck egg. How much in dollars does she make every day at the "
    "farmers' market?,True,True,"
    '" Janet starts with 16 eggs.\nShe sells 9.\n#### 18","She makes $18, ""every"" day."\n'
    "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in "
    'total does it take?,True,True," 2 + 1 = 3\n#### 3\n\n","3 bolts."\n'
    '"Josh decides to try flipping a house.  He buys a house for $80,000 and then puts in '
    "$50,000 in repairs.  This increased the value of the house by 150%.  How much profit did "
    'he make?",False,False,'
    '" $130,00","$25,000"\n'
)
GSM8K_IDS = ["d9cef2c1b0102cd1", "d0f5b0e1455113c2", "27cb84dfcd9c3ea2"]


def test_routellm_raw_gsm8k_matches_shared_ids(tmp_path: Path) -> None:
    path = tmp_path / "gsm8k_responses.csv"
    path.write_text(GSM8K_RAW, encoding="utf-8")

    result = load_records(path)

    assert result.format == "routellm"
    assert [r.id for r in result.records] == GSM8K_IDS
    janet = result.records[0]
    assert janet.source == "gsm8k"
    assert janet.id == hashlib.sha1(("gsm8k\n" + janet.prompt).encode()).hexdigest()[:16]
    assert janet.outcomes == {
        "weak": TierOutcome(1.0, model="mixtral-8x7b-instruct-v0.1"),
        "strong": TierOutcome(1.0, model="gpt-4-1106-preview"),
    }
    assert [(r.outcomes["weak"].correct, r.outcomes["strong"].correct) for r in result.records] == [
        (1.0, 1.0),
        (1.0, 1.0),
        (0.0, 0.0),
    ]


def test_routellm_multiline_prompts_and_source_names(tmp_path: Path) -> None:
    prompts = [
        "Which bone?\nA. Femur\nB. Tibia\nAnswer:",
        'A "dished face" profile, is it\nA. x\nAnswer:',
    ]
    header = ["prompt", "mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview"]
    rows = [[prompts[0], "True", "False"], [prompts[1], "false", "TRUE"]]
    for name, source in [
        ("mmlu_anatomy.csv", "mmlu/anatomy"),
        ("gsm8k_responses.csv", "gsm8k"),
        ("my evals.csv", "my evals"),
    ]:
        result = load_records(write_csv(tmp_path / name, header, rows))
        assert [r.prompt for r in result.records] == prompts
        assert {r.source for r in result.records} == {source}
        assert [r.id for r in result.records] == [record_id(source, p) for p in prompts]
        assert list(result.records[1].outcomes) == ["weak", "strong"]
        assert result.records[1].outcomes["strong"] == TierOutcome(1.0, model="gpt-4-1106-preview")


def test_routellm_three_models_are_tiers_by_name(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "evals.csv",
        ["prompt", "small", "medium", "large"],
        [["q", "False", "True", "True"]],
    )
    record = load_records(path, format="routellm").records[0]
    assert record.outcomes == {
        "small": TierOutcome(0.0, model="small"),
        "medium": TierOutcome(1.0, model="medium"),
        "large": TierOutcome(1.0, model="large"),
    }


def test_routellm_non_boolean_cell_names_the_line_where_the_row_starts(tmp_path: Path) -> None:
    header = ["prompt", "weak-model", "strong-model"]
    rows = [
        ["two\nline prompt", "True", "True"],
        ["three\nline\nprompt", "True", "maybe"],
        ["q", "False", "True"],
    ]
    path = write_csv(tmp_path / "mmlu_x.csv", header, rows)
    with pytest.raises(DataError) as caught:
        load_records(path)
    assert str(caught.value).startswith(
        f'{path} line 4: strong-model: must be True or False, got "maybe".'
    )
    result = load_records(path, skip_bad_rows=True)
    assert [b.line for b in result.skipped] == [4]
    assert len(result.records) == 2


def test_routellm_row_with_wrong_cell_count_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "evals.csv"
    path.write_text("prompt,a,b\nq1,True,True\nq2,True\n\nq3,False,True\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"evals\.csv line 3: expected 3 cells like the header, found 2"
    ):
        load_records(path, format="routellm")
    assert len(load_records(path, format="routellm", skip_bad_rows=True).records) == 2


def test_routellm_duplicate_prompt_is_a_bad_row(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "e.csv", ["prompt", "a", "b"], [["q", "True", "True"], ["q", "True", "False"]]
    )
    with pytest.raises(
        DataError, match=r"e\.csv line 3: id: duplicate id '[0-9a-f]{16}' \(first used on line 2\)"
    ):
        load_records(path, format="routellm")


def test_routellm_without_model_columns_is_rejected(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "e.csv", ["prompt", "answer_response"], [["q", "4"]])
    with pytest.raises(DataError, match="needs a 'prompt' column and at least one model column"):
        load_records(path, format="routellm")


# ---------------------------------------------------------------- RouterBench

ROUTERBENCH_HEADER = [
    "sample_id",
    "prompt",
    "eval_name",
    "oracle_model_to_route_to",
    "gpt-4",
    "gpt-4|model_response",
    "gpt-4|total_cost",
    "mixtral",
    "mixtral|model_response",
    "mixtral|total_cost",
]


def test_routerbench_csv_orders_tiers_cheapest_first(tmp_path: Path) -> None:
    rows = [
        ["mmlu.val.1", "What is 2+2?", "mmlu", "mixtral", "1", "4", "0.003", "1.0", "4", "0.0002"],
        ["gsm.val.7", "Twice 3?", "gsm8k", "gpt-4", "True", "6", "0.005", "0", "5", ""],
    ]
    result = load_records(write_csv(tmp_path / "rb.csv", ROUTERBENCH_HEADER, rows))

    assert result.format == "routerbench"
    first, second = result.records
    assert (first.id, first.source, first.prompt) == ("mmlu.val.1", "mmlu", "What is 2+2?")
    assert list(first.outcomes) == ["mixtral", "gpt-4"]  # mean cost 0.0002 < 0.004
    assert first.outcomes["mixtral"] == TierOutcome(1.0, model="mixtral", cost_usd=0.0002)
    assert first.outcomes["gpt-4"] == TierOutcome(1.0, model="gpt-4", cost_usd=0.003)
    assert second.outcomes["mixtral"] == TierOutcome(0.0, model="mixtral", cost_usd=None)
    assert second.source == "gsm8k"


def test_routerbench_jsonl_with_graded_scores_and_computed_ids(tmp_path: Path) -> None:
    rows: list[object] = [
        {
            "prompt": "p1",
            "eval_name": "mbpp",
            "big": 0.75,
            "big|total_cost": 0.01,
            "tiny": 0.25,
            "tiny|total_cost": 0.001,
        },
        {"prompt": "p2", "big": 1, "big|total_cost": 0.02, "tiny": False, "tiny|total_cost": 0.002},
    ]
    result = load_records(write_jsonl(tmp_path / "bench.jsonl", rows))
    assert result.format == "routerbench"
    first, second = result.records
    assert list(first.outcomes) == ["tiny", "big"]
    assert first.outcomes["big"].correct == 0.75
    assert first.id == record_id("mbpp", "p1")
    assert second.source == "bench"  # no eval_name: the file stem
    assert second.outcomes["tiny"] == TierOutcome(0.0, model="tiny", cost_usd=0.002)


def test_routerbench_without_costs_keeps_numeric_columns_in_file_order(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "rb.csv",
        ["sample_id", "prompt", "eval_name", "m2", "m1", "note"],
        [["7", "p", "arc", "1", "0", "free text"]],
    )
    record = load_records(path, format="routerbench").records[0]
    assert record.id == "7"
    assert list(record.outcomes) == ["m2", "m1"]


def test_routerbench_bad_score_and_cost_are_bad_rows(tmp_path: Path) -> None:
    rows = [
        ["a", "p1", "mmlu", "", "1", "", "0.1", "1", "", "0.01"],
        ["b", "p2", "mmlu", "", "2", "", "0.1", "1", "", "0.01"],
        ["c", "p3", "mmlu", "", "1", "", "-3", "1", "", "0.01"],
    ]
    path = write_csv(tmp_path / "rb.csv", ROUTERBENCH_HEADER, rows)
    with pytest.raises(
        DataError,
        match=r"rb\.csv line 3: gpt-4: must be True/False or a number in \[0, 1\], got \"2\"",
    ):
        load_records(path)
    result = load_records(path, skip_bad_rows=True)
    assert [(b.line, b.reason.split(":")[0]) for b in result.skipped] == [
        (3, "gpt-4"),
        (4, "gpt-4|total_cost"),
    ]


def test_routerbench_cost_column_without_score_column_is_rejected(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "rb.csv", ["prompt", "gpt-4|total_cost"], [["p", "0.1"]])
    with pytest.raises(
        DataError, match=r"has a 'gpt-4\|total_cost' column but no 'gpt-4' score column"
    ):
        load_records(path)


@pytest.mark.parametrize("name", ["routerbench_0shot.pkl", "data.PICKLE"])
def test_pickles_are_refused_without_reading(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x80\x04K\x01.")  # a real pickle of the number 1
    for format in ("auto", "routerbench"):
        with pytest.raises(DataError, match="never unpickles") as caught:
            load_records(path, format=format)
        assert "pd.read_pickle" in str(caught.value) and "to_csv" in str(caught.value)


# ---------------------------------------------------------------- labels


def test_labels_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = write_csv(
        tmp_path / "labels.csv",
        ["id", "prompt", "difficulty", "source", "note"],
        [
            ["x1", "hard one", "0.9", "mine", "n"],
            ["", "easy one", "false", "", ""],
            ["", "yes", "TRUE", "", ""],
        ],
    )
    jsonl_path = write_jsonl(
        tmp_path / "labels.jsonl",
        [{"prompt": "a", "difficulty": 0}, {"prompt": "b", "difficulty": True, "id": "b1"}],
    )
    from_csv = load_records(csv_path)
    from_jsonl = load_records(jsonl_path)

    assert from_csv.format == from_jsonl.format == "labels"
    assert from_csv.records[0] == OutcomeRecord("x1", "mine", "hard one", {}, 0.9)
    assert from_csv.records[1] == OutcomeRecord(
        record_id("labels", "easy one"), "labels", "easy one", {}, 0.0
    )
    assert from_csv.records[2].difficulty == 1.0
    assert [(r.id, r.difficulty) for r in from_jsonl.records] == [
        (record_id("labels", "a"), 0.0),
        ("b1", 1.0),
    ]


@pytest.mark.parametrize(("value", "shown"), [(1.5, "1.5"), ("hard", '"hard"'), (None, None)])
def test_labels_bad_difficulty(tmp_path: Path, value: object, shown: str | None) -> None:
    path = write_jsonl(
        tmp_path / "l.jsonl",
        [{"prompt": "a", "difficulty": 0.5}, {"prompt": "b", "difficulty": value}],
    )
    with pytest.raises(DataError) as caught:
        load_records(path, format="labels")
    expected = (
        f"difficulty: must be a number in [0, 1] or true/false (hard/easy), got {shown}."
        if shown
        else "difficulty: missing."
    )
    assert str(caught.value).startswith(f"{path} line 2: {expected}")
    assert load_records(path, format="labels", skip_bad_rows=True).skipped[0].line == 2


def test_labels_csv_without_difficulty_column_is_rejected(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "l.csv", ["prompt", "score"], [["a", "0.5"]])
    with pytest.raises(DataError, match="needs the columns prompt and difficulty"):
        load_records(path, format="labels")


# ---------------------------------------------------------------- detection and file-level errors


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.jsonl", json.dumps(row("q")) + "\n", "outcomes"),
        ("a.ndjson", json.dumps(row("q")) + "\n", "outcomes"),
        ("no_extension", "\n" + json.dumps(row("q")) + "\n", "outcomes"),
        ("a.csv", "prompt,weak,strong\nq,True,False\n", "routellm"),
        ("a.txt", "prompt,weak,strong\nq,True,False\n", "routellm"),
        ("a.csv", "prompt,m,m|total_cost\nq,1,0.1\n", "routerbench"),
        ("a.jsonl", '{"prompt": "q", "m": 1, "m|total_cost": 0.1}\n', "routerbench"),
        ("a.csv", "\ufeffprompt,difficulty\nq,0.3\n", "labels"),
        ("a.json", '{"prompt": "q", "difficulty": 0.3}\n', "labels"),
    ],
)
def test_auto_detection(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert load_records(path).format == expected


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.jsonl", '{"question": "q", "answer": "4"}\n'),
        ("a.csv", "prompt,model_a\nq,maybe\n"),
        ("a.jsonl", "not json at all\n"),
    ],
)
def test_undetectable_format_lists_formats_and_flag(
    tmp_path: Path, name: str, content: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_records(path)
    message = str(caught.value)
    assert message.startswith(f"Cannot tell the format of {path}")
    assert "outcomes, routellm, routerbench, labels" in message and "--format" in message


def test_file_level_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n  \n", encoding="utf-8")
    (tmp_path / "header_only.csv").write_text("prompt,difficulty\n", encoding="utf-8")
    (tmp_path / "array.json").write_text('[{"prompt": "q"}]', encoding="utf-8")
    (tmp_path / "o.csv").write_text("prompt,a,b\nq,True,True\n", encoding="utf-8")
    cases = [
        (tmp_path / "missing.jsonl", {}, "missing.jsonl does not exist"),
        (tmp_path, {}, "is not a file"),
        (tmp_path / "empty.jsonl", {}, "empty.jsonl is empty"),
        (tmp_path / "header_only.csv", {}, "header_only.csv has no data rows"),
        (tmp_path / "array.json", {}, "looks like one JSON array"),
        (
            tmp_path / "o.csv",
            {"format": "outcomes"},
            "looks like CSV, but the outcomes format is JSON Lines",
        ),
        (
            tmp_path / "o.csv",
            {"format": "csv"},
            "Unknown data format 'csv'. Choose auto or one of: outcomes,",
        ),
    ]
    for path, options, expected in cases:
        with pytest.raises(DataError) as caught:
            load_records(path, **options)  # type: ignore[arg-type]
        assert expected in str(caught.value), (path, options)


# ---------------------------------------------------------------- several files


def test_load_many_keeps_first_of_duplicate_ids_and_counts_them(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [row("q1", id="1"), row("q2", id="2")])
    b = write_jsonl(
        tmp_path / "b.jsonl", [row("other", weak=False, id="2"), row("q3", id="3"), "{broken"]
    )
    result = load_many([a, b], skip_bad_rows=True)
    assert [r.id for r in result.records] == ["1", "2", "3"]
    assert result.records[1].prompt == "q2"
    assert result.duplicates == 1
    assert [str(bad) for bad in result.skipped] == [
        f"{b} line 3: invalid JSON (Expecting property name enclosed in double quotes at column 2)"
    ]
    assert result.summary() == (
        "loaded 3 rows from 2 files (outcomes); skipped 1 bad row; "
        "dropped 1 duplicate id (kept the first)"
    )
    with pytest.raises(DataError, match=r"b\.jsonl line 3: invalid JSON"):
        load_many([a, b])


def test_load_many_mixes_formats_but_not_tier_names(tmp_path: Path) -> None:
    outcomes = write_jsonl(tmp_path / "o.jsonl", [row("q1")])
    labels = write_csv(tmp_path / "l.csv", ["prompt", "difficulty"], [["q2", "1"]])
    other = write_csv(
        tmp_path / "e.csv", ["prompt", "s", "m", "l"], [["q3", "True", "True", "True"]]
    )
    mixed = load_many([outcomes, labels])
    assert (mixed.format, len(mixed.records), mixed.path) == (
        "outcomes+labels",
        2,
        f"{outcomes}, {labels}",
    )
    with pytest.raises(
        DataError, match=r"has tiers \[s, m, l\] but .*o\.jsonl has \[weak, strong\]"
    ):
        load_many([outcomes, other])
    with pytest.raises(DataError, match="No data files given"):
        load_many([])


# ---------------------------------------------------------------- URLs, against a real local server


class _Files(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


@pytest.fixture
def file_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, type[_Files]]]:
    """A real HTTP server on 127.0.0.1 serving _Files.files; yields its base URL."""
    for proxy in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(proxy, raising=False)
    handler = type("Handler", (_Files,), {"files": {}, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_url_is_downloaded_once_and_cached(
    tmp_path: Path, file_server: tuple[str, type[_Files]]
) -> None:
    base, handler = file_server
    handler.files["/evals/gsm8k/gsm8k_responses.csv"] = GSM8K_RAW.encode()
    url = base + "/evals/gsm8k/gsm8k_responses.csv"
    cache = tmp_path / "cache"

    first = load_records(url, cache_dir=cache)
    second = load_records(url, cache_dir=cache)

    assert handler.requests == [
        "/evals/gsm8k/gsm8k_responses.csv"
    ]  # the second load made no request
    assert [r.id for r in first.records] == [r.id for r in second.records] == GSM8K_IDS
    assert first.records[0].source == "gsm8k"  # from the URL's file name, not the cache name
    assert first.path == url and first.format == "routellm"
    expected_name = hashlib.sha256(url.encode()).hexdigest()[:16] + "-gsm8k_responses.csv"
    assert [p.name for p in cache.iterdir()] == [expected_name]  # no temporary file left behind


def test_url_cache_dir_comes_from_environment(
    tmp_path: Path, file_server: tuple[str, type[_Files]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, handler = file_server
    handler.files["/labels.csv"] = b"prompt,difficulty\nq,0.5\n"
    monkeypatch.setenv("ROUTER_CACHE_DIR", str(tmp_path / "root"))
    result = load_records(base + "/labels.csv")
    assert result.records[0].source == "labels"
    assert len(list((tmp_path / "root" / "downloads").glob("*-labels.csv"))) == 1


def test_url_errors_say_to_download_by_hand(
    tmp_path: Path, file_server: tuple[str, type[_Files]]
) -> None:
    base, _ = file_server
    with pytest.raises(DataError) as caught:
        load_records(base + "/missing.csv", cache_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith(
        f"Could not fetch {base}/missing.csv: the server answered HTTP 404 Not Found."
    )
    assert "by hand" in message and "local path" in message
    assert list(tmp_path.iterdir()) == []  # nothing cached


def test_unreachable_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    url = f"http://127.0.0.1:{closed_port()}/x.csv"
    with pytest.raises(DataError, match=rf"Could not fetch {re.escape(url)}: .*by hand"):
        load_records(url, cache_dir=tmp_path)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------- the shared data


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_OUTCOMES.is_file(), reason="../shared/data is not present")
def test_shared_outcomes_load(tmp_path: Path) -> None:
    started = time.perf_counter()
    result = load_records(SHARED_OUTCOMES)
    elapsed = time.perf_counter() - started

    assert result.format == "outcomes"
    assert len(result.records) == 13_265
    assert result.skipped == []
    assert {tuple(r.outcomes) for r in result.records} == {("weak", "strong")}
    # The raw RouteLLM rows load to exactly the shared records (ids, prompts, tiers, models).
    raw_path = tmp_path / "gsm8k_responses.csv"
    raw_path.write_text(GSM8K_RAW, encoding="utf-8")
    raw = load_records(raw_path).records
    by_id = {r.id: r for r in result.records}
    assert [by_id[r.id] for r in raw] == raw
    assert elapsed < 5.0  # about 0.3 s when the machine is not busy
