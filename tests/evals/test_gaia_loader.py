"""The GAIA loader: the official layout (jsonl and parquet), filters, malformed files, and the shipped mini suite
(every answer recomputed here from the question and its attachment, independently of the data files' maker)."""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from mdap.errors import ConfigError
from mdap.evals.gaia import MINI_DATA, GaiaQuestion, load_gaia, score

GOOD: dict[str, Any] = {
    "task_id": "t1",
    "Question": "What is 2 + 2?",
    "Level": 1,
    "Final answer": "4",
    "file_name": "",
    "Annotator Metadata": {"Steps": "1. add", "Number of steps": "1"},
}


def write_split(root: Path, records: list[Any], *, split: str = "validation", raw: str | None = None) -> Path:
    folder = root / "2023" / split
    folder.mkdir(parents=True, exist_ok=True)
    text = raw if raw is not None else "".join(json.dumps(r) + "\n" for r in records)
    (folder / "metadata.jsonl").write_text(text)
    return folder


def test_loads_the_official_layout_with_attachments(tmp_path: Path) -> None:
    folder = write_split(
        tmp_path,
        [GOOD, {**GOOD, "task_id": "t2", "Level": "2", "file_name": "data.csv", "Final answer": "a, b"}],
    )
    (folder / "data.csv").write_text("x\n1\n")
    qs = load_gaia(tmp_path, "validation")
    assert [q.task_id for q in qs] == ["t1", "t2"]
    assert qs[0].attachment is None and qs[0].annotator_metadata["Number of steps"] == "1"
    assert qs[1].level == 2 and qs[1].attachment == folder / "data.csv" and qs[1].final_answer == "a, b"
    assert load_gaia(folder) == qs  # the split folder itself works too
    assert load_gaia(tmp_path / "2023", "validation") == qs


def test_filters_by_level_and_ids(tmp_path: Path) -> None:
    records = [{**GOOD, "task_id": f"t{i}", "Level": 1 + i % 3} for i in range(9)]
    write_split(tmp_path, records)
    assert [q.task_id for q in load_gaia(tmp_path, levels=[2])] == ["t1", "t4", "t7"]
    assert [q.task_id for q in load_gaia(tmp_path, levels=[1, 3], ids=["t0", "t1", "t2"])] == ["t0", "t2"]
    assert [q.task_id for q in load_gaia(tmp_path, ids=["t8", "t3"])] == ["t3", "t8"]  # file order
    with pytest.raises(ConfigError, match=r"task ids not in .*: nope"):
        load_gaia(tmp_path, ids=["t1", "nope"])
    with pytest.raises(ConfigError, match=r"unknown GAIA levels \[4\]"):
        load_gaia(tmp_path, levels=[4])


def test_hidden_answers_are_not_scored(tmp_path: Path) -> None:
    write_split(tmp_path, [{**GOOD, "Final answer": "?"}], split="test")
    [q] = load_gaia(tmp_path, "test")
    assert not q.scored


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([json.dumps(GOOD), "{not json"], r"metadata.jsonl line 2: not valid JSON"),
        ([json.dumps(GOOD), "", "[1, 2]"], r"metadata.jsonl line 3: each line must be a JSON object, got list"),
        ([json.dumps({k: v for k, v in GOOD.items() if k != "Question"})], r"line 1, field 'Question': missing"),
        ([json.dumps({**GOOD, "Level": 5})], r"line 1, field 'Level': must be 1, 2 or 3, got 5"),
        ([json.dumps({**GOOD, "Level": "hard"})], r"line 1, field 'Level': must be 1, 2 or 3, got 'hard'"),
        ([json.dumps({**GOOD, "Question": ["a"]})], r"line 1, field 'Question': must be a string, got list"),
        ([json.dumps({**GOOD, "task_id": "  "})], r"line 1, field 'task_id': is empty"),
        ([json.dumps({**GOOD, "Final answer": None})], r"line 1, field 'Final answer': must be a string"),
        ([json.dumps({**GOOD, "Annotator Metadata": "x"})], r"line 1, field 'Annotator Metadata': must be an object"),
        ([json.dumps(GOOD), json.dumps(GOOD)], r"line 2: task_id 't1' was already used at .*line 1"),
        ([json.dumps({**GOOD, "file_name": "missing.csv"})], r"line 1, field 'file_name': the attachment .* not exist"),
        ([json.dumps({**GOOD, "file_name": "../secret.txt"})], r"line 1, field 'file_name': '../secret.txt' must be"),
        ([json.dumps({**GOOD, "file_name": "/etc/passwd"})], r"line 1, field 'file_name': '/etc/passwd' must be"),
    ],
)
def test_malformed_jsonl_names_file_line_and_field(tmp_path: Path, lines: list[str], message: str) -> None:
    (tmp_path / "secret.txt").write_text("x")
    write_split(tmp_path, [], raw="\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_gaia(tmp_path)
    assert str(tmp_path / "2023" / "validation" / "metadata.jsonl") in str(err.value)


def test_no_metadata_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_gaia(tmp_path / "nowhere")
    (tmp_path / "2023" / "validation").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"no GAIA metadata for split 'validation' .*2023/validation/metadata.jsonl"):
        load_gaia(tmp_path)


def test_parquet_metadata(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "2023" / "validation"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("hello")
    rows = [GOOD, {**GOOD, "task_id": "t2", "Level": 3, "file_name": "notes.txt", "Final answer": "hello"}]
    pq.write_table(pa.Table.from_pylist(rows), folder / "metadata.parquet")
    qs = load_gaia(tmp_path)
    assert [(q.task_id, q.level, q.file_name) for q in qs] == [("t1", 1, ""), ("t2", 3, "notes.txt")]
    assert qs[0].annotator_metadata["Steps"] == "1. add"
    pq.write_table(pa.Table.from_pylist([GOOD, {**GOOD, "task_id": "t2", "Level": 7}]), folder / "metadata.parquet")
    with pytest.raises(ConfigError, match=r"metadata.parquet row 2, field 'Level': must be 1, 2 or 3, got 7"):
        load_gaia(tmp_path)
    (folder / "metadata.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ConfigError, match="not a readable parquet file"):
        load_gaia(tmp_path)


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "2023" / "validation"
    folder.mkdir(parents=True)
    (folder / "metadata.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail as if it were not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match=r"metadata.parquet needs pyarrow: pip install 'mdap\[gaia\]'"):
        load_gaia(tmp_path)


# ---- the shipped mini suite: every answer recomputed from scratch ----


def _rows(name: str) -> list[dict[str, str]]:
    with (MINI_DATA / "2023" / "validation" / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def _json(name: str) -> Any:
    return json.loads((MINI_DATA / "2023" / "validation" / name).read_text())


def _round(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def _primes(limit: int) -> list[int]:
    return [n for n in range(2, limit) if all(n % d for d in range(2, math.isqrt(n) + 1))]


def _c(f: float) -> float:
    return (f - 32) / 1.8


def _highs(city: str) -> list[int]:
    return [int(r["high_f"]) for r in _rows("march_highs.csv") if r["city"] == city]


def _notes() -> str:
    return (MINI_DATA / "2023" / "validation" / "meeting_notes.txt").read_text()


def _south_q2() -> float:
    return sum(
        int(r["units"]) * float(r["unit_price"])
        for r in _rows("regional_sales_2022.csv")
        if r["region"] == "South" and r["month"] in {"Apr", "May", "Jun"}
    )


def _busiest() -> str:
    totals: dict[str, int] = {}
    for r in _rows("regional_sales_2022.csv"):
        totals[r["month"]] = totals.get(r["month"], 0) + int(r["units"])
    best = max(totals, key=lambda m: totals[m])
    return date(
        2022, ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].index(best) + 1, 1
    ).strftime("%B")


def _widest() -> str:
    spans = {c: max(_highs(c)) - min(_highs(c)) for c in ("Oslo", "Lisbon", "Toronto")}
    city = max(spans, key=lambda c: spans[c])
    return f"{city}, {_round(spans[city] / 1.8, 1)}"


def _items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _json("warehouse_inventory.json")["items"]
    return items


def _books() -> list[dict[str, Any]]:
    books: list[dict[str, Any]] = _json("library_catalogue.json")
    return books


# Question text (a distinctive part) -> the answer, computed here.
MINI_ANSWERS: dict[str, Callable[[], str]] = {
    "23 + 144": lambda: str(17 * 23 + 144 // 12),
    "seconds are there in 3 days": lambda: str(3 * 86_400),
    "marathon is 42.195 km": lambda: _round(42.195 / 1.609344, 2),
    "1 January 2000": lambda: date(2000, 1, 1).strftime("%A"),
    "prime numbers are there below 100": lambda: str(len(_primes(100))),
    "first five prime numbers greater than 50": lambda: ", ".join(
        str(p) for p in [p for p in _primes(100) if p > 50][:5]
    ),
    "pear, apple, mango, kiwi": lambda: "apple, kiwi, mango, pear",
    "'stressed' backwards": lambda: "".join(reversed("stressed")),
    "100 degrees Fahrenheit": lambda: _round(_c(100), 1),
    "greatest common divisor of 1071 and 462": lambda: str(math.gcd(1071, 462)),
    "first 100 positive multiples of 7": lambda: str(7 * 100 * 101 // 2),
    "earns 5% interest per year": lambda: _round(1000 * 1.05**10, 2),
    "5 US gallons": lambda: _round(5 * 3.785411784, 1),
    "North region sell": lambda: str(
        sum(int(r["units"]) for r in _rows("regional_sales_2022.csv") if r["region"] == "North")
    ),
    "South region's revenue": lambda: _round(_south_q2(), 2),
    "which month had the most units": _busiest,
    "total value (quantity times unit price)": lambda: str(
        round(sum(i["quantity"] * i["unit_price"] for i in _items()))
    ),
    "'tools' category": lambda: ", ".join(
        sorted(i["name"] for i in _items() if i["category"] == "tools" and i["quantity"] < 25)
    ),
    "different item categories": lambda: str(len({i["category"] for i in _items()})),
    "lead the budget review": lambda: re.findall(r"- (.+?): lead the budget review", _notes())[0],
    "How many action items": lambda: str(sum(1 for line in _notes().splitlines() if line.startswith("- "))),
    "word 'deadline'": lambda: str(_notes().lower().count("deadline")),
    "Oslo's average daily high": lambda: _round(_c(sum(_highs("Oslo")) / len(_highs("Oslo"))), 1),
    "largest difference between its warmest": _widest,
    "published before 1950": lambda: max((b for b in _books() if b["year"] < 1950), key=lambda b: b["pages"])["title"],
    "books by Helen Marsh": lambda: str(sum(b["pages"] for b in _books() if b["author"] == "Helen Marsh")),
}


def _mini() -> list[GaiaQuestion]:
    return load_gaia(MINI_DATA, "validation")


def test_mini_suite_is_in_the_official_layout() -> None:
    qs = _mini()
    assert len(qs) >= 20
    assert {q.level for q in qs} == {1, 2, 3}
    assert len({q.task_id for q in qs}) == len(qs)
    suffixes = {q.attachment.suffix for q in qs if q.attachment is not None}
    assert suffixes == {".csv", ".json", ".txt"}
    assert sum(1 for q in qs if re.search(r"[,;]", q.final_answer)) >= 3  # list answers
    assert all(q.scored and q.annotator_metadata.get("Steps") for q in qs)
    raw = (MINI_DATA / "2023" / "validation" / "metadata.jsonl").read_text().splitlines()
    assert set(json.loads(raw[0])) == {
        "task_id",
        "Question",
        "Level",
        "Final answer",
        "file_name",
        "Annotator Metadata",
    }


def test_mini_suite_answers_are_right() -> None:
    qs = _mini()
    matched: dict[str, str] = {}
    for q in qs:
        [key] = [k for k in MINI_ANSWERS if k in q.question]
        matched[key] = q.task_id
        expected = MINI_ANSWERS[key]()
        assert score(expected, q.final_answer), (q.question, expected, q.final_answer)
        assert q.final_answer == expected or float(q.final_answer) == float(expected)
    assert len(matched) == len(MINI_ANSWERS) == len(qs)
