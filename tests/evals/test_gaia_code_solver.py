"""The GAIA solver acting in code (issue 17, measured with Qwen2.5-Coder-0.5B): a python block is its action,
the program's one-line output is its answer, it sees the beginning of the attached file, and it is offered no
tool that cannot work (read_attachment without a file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdap.evals.gaia import MINI_DATA, GaiaQuestion, gaia_pipeline, gaia_task, load_gaia, score
from mdap.evals.gaia.pipeline import solver_prompt
from mdap.evals.gaia.tools import file_head
from mdap.models import ScriptedModel

QUESTIONS = {q.task_id[:8]: q for q in load_gaia(MINI_DATA)}


def _block(code: str) -> str:
    return f"To find it, run this program:\n\n```python\n{code}\n```\n\nIt prints the answer."


async def _run(q: GaiaQuestion, script: list[str], tmp_path: Path, **kw: object) -> tuple[object, ScriptedModel]:
    model = ScriptedModel(script, native_tools=True)
    pipeline = gaia_pipeline(model, q, tmp_path / "ws", planner="fixed", k=1, **kw)  # type: ignore[arg-type]
    return await pipeline.run(gaia_task(q), thread_id=q.task_id), model


@pytest.mark.sandbox
async def test_the_program_output_is_the_answer(tmp_path: Path) -> None:
    q = QUESTIONS["c9e5af3b"]
    code = "words = ['pear', 'apple', 'mango', 'kiwi']\nprint(', '.join(sorted(words)))"
    result, model = await _run(q, [_block(code), "unused"], tmp_path)
    assert result.answer == "apple, kiwi, mango, pear" and score(result.answer, q.final_answer)  # type: ignore[attr-defined]
    assert len(model.calls) == 1 and model.calls[0].options == {}  # one sample; no native tools were sent
    system = model.calls[0].messages[0]["content"]
    assert "read_attachment" not in system and "calculator" not in system


@pytest.mark.sandbox
async def test_a_failed_program_is_fixed_by_the_model_and_then_answers(tmp_path: Path) -> None:
    q = QUESTIONS["3fe66796"]
    script = [_block("print(stressed[::-1])"), _block("print('stressed'[::-1])"), "unused"]
    result, model = await _run(q, script, tmp_path)
    assert result.answer == "desserts"  # type: ignore[attr-defined]
    assert "NameError" in model.calls[1].prompt and model.remaining == 1


@pytest.mark.sandbox
async def test_the_solver_sees_the_head_of_the_attachment_and_reads_it_in_python(tmp_path: Path) -> None:
    q = QUESTIONS["812a3b48"]
    code = (
        "import csv\n"
        "rows = csv.DictReader(open('regional_sales_2022.csv'))\n"
        "print(sum(int(r['units']) for r in rows if r['region'] == 'North'))"
    )
    result, model = await _run(q, [_block(code), "unused"], tmp_path)
    system = model.calls[0].messages[0]["content"]
    assert "regional_sales_2022.csv is in the working folder" in system
    assert "month,region,units,unit_price\nJan,North,178,12.25" in system and "no pandas" in system
    assert result.answer == q.final_answer  # type: ignore[attr-defined]


async def test_acting_with_tools_offers_read_attachment_only_with_a_file(tmp_path: Path) -> None:
    with_file, without = QUESTIONS["812a3b48"], QUESTIONS["b56dbce7"]
    for q, expected in ((with_file, ["python", "read_attachment", "calculator"]), (without, ["python", "calculator"])):
        _, model = await _run(q, ['{"answer": "1"}'], tmp_path / q.task_id[:8], actions="tools")
        assert [t["function"]["name"] for t in model.calls[0].options["tools"]] == expected
    assert "read_attachment" not in solver_prompt(None, "tools")


def test_gaia_task_names_the_file_without_naming_a_tool() -> None:
    task = gaia_task(QUESTIONS["812a3b48"])
    assert task.text.endswith("Attached file: regional_sales_2022.csv") and task.files == ["regional_sales_2022.csv"]


def test_file_head_shows_the_first_lines_and_says_how_many_there_are(tmp_path: Path) -> None:
    csv_file = tmp_path / "data.csv"
    csv_file.write_text("a,b\n" + "".join(f"{i},{i * i}\n" for i in range(100)))
    head = file_head(csv_file, max_lines=3)
    assert head == "a,b\n0,0\n1,1\n... (101 lines in all)"
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps({"items": [{"name": "saw"}]}))
    assert file_head(doc) == '{\n "items": [\n  {\n   "name": "saw"\n  }\n ]\n}'  # pretty-printed, all of it
    blob = tmp_path / "image.png"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert file_head(blob) == "(a binary file of 10 bytes)"
    assert len(file_head(csv_file, max_lines=1000, max_chars=50)) < 80


@pytest.mark.sandbox
@pytest.mark.parametrize(
    ("printed", "asked"),
    [
        ("n = 2008\nprint(n)", False),
        ("n = 2008\nprint({'answer': n})", False),  # a dict with an answer, as small models print one
        ("n = 2008\nprint(f'Total: {n}')", True),  # labelled: the model states the answer
        ("n = 2008\nprint(f'The North region sold {n} units.')", True),  # a sentence
        ("n = 2008\nprint(n)\nprint(n - 1991)", True),  # two lines
    ],
)
async def test_only_an_output_in_the_form_of_an_answer_is_the_answer(printed: str, asked: bool, tmp_path: Path) -> None:
    q = QUESTIONS["812a3b48"]
    result, model = await _run(q, [_block(printed), '{"answer": "2008"}', "unused"], tmp_path)
    assert result.answer == "2008"  # type: ignore[attr-defined]
    assert len(model.calls) == (2 if asked else 1)
