"""The worker protocol against what a real small model wrote (issue 17): replies captured from
Qwen2.5-Coder-0.5B-Instruct (tests/fixtures/real_replies) are replayed through a ScriptedModel.

Causes pinned here: tool calls beside an answer never ran (now they run and the answer is dropped and counted);
calls in broken JSON or in a copy of the tool spec were unreadable (now read); a python block is a call; the
prompt shows one concrete call instead of the spec list; a retry redrew the same greedy sample; the python
tool refused programs written with math signs and echoed None.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mdap.agents import CoordinatorPolicy, Limits, Pipeline, Tool, WorkerRole, WorkItem, Workspace, python_tool
from mdap.agents.replies import balance_json, marked_answer, read_reply
from mdap.agents.worker import RETRY_TEMPERATURE, Worker
from mdap.models import ScriptedModel
from mdap.planners import StaticPlanner, fork_join
from mdap.voters import FirstToAheadByK

FIXTURE = Path(__file__).parents[1] / "fixtures" / "real_replies" / "qwen05_gaia_level1.json"
REPLIES: dict[str, dict[str, Any]] = {r["id"]: r for r in json.loads(FIXTURE.read_text(encoding="utf-8"))}


def text(rid: str) -> str:
    return str(REPLIES[rid]["text"])


class FakeTools:
    """The GAIA solver's tools by name and schema; each call is recorded and answered from a table."""

    def __init__(self, results: dict[str, str] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.results = results or {}

    def tool(self, name: str, description: str, required: list[str]) -> Tool:
        async def fn(args: dict[str, Any]) -> str:
            self.calls.append((name, args))
            return self.results.get(name, f"{name} ran")

        props = {p: {"type": "string"} for p in required}
        return Tool(name, description, {"type": "object", "properties": props, "required": required}, fn)

    def all(self) -> list[Tool]:
        return [
            self.tool("python", "Run Python code or evaluate an expression in a fresh process.", ["code"]),
            self.tool("read_attachment", "Read the file attached to the question.", []),
            self.tool("calculator", "Evaluate an arithmetic expression.", ["expression"]),
        ]


TOOLS = {t.name: t for t in FakeTools().all()}


@pytest.mark.parametrize(
    ("rid", "answer", "calls", "unfilled"),
    [
        # the OpenAI tool spec copied into the call, values written into "properties", stray "]]}" at the end
        (
            "k1#4",
            "1000",
            [("python", {"code": "17 * 23 + 144 ÷ 12"}), ("calculator", {"expression": "17 * 23 + 144 ÷ 12"})],
            1,
        ),
        # "required" copied into the arguments
        (
            "k1#5",
            "129",
            [("python", {"code": "17 * 23 + 144 ÷ 12"}), ("read_attachment", {"file_name": "step1.txt"})],
            0,
        ),
        # arguments written as a schema with the value in "properties"
        ("k1#11", "2000-01-01", [("read_attachment", {"filename": "date_of January 2000.txt"})], 0),
        ("k1#27", "ressed", [("python", {"code": "print('stressed')"})], 0),
        # the function object never closes: brackets rebalanced
        ("k1#33", "42.195", [("python", {"code": "print(42.195 / 1.609344)}"})], 0),
        # fenced JSON, valid
        ("k1#37", "3.12", [("python", {"code": "import math\nprint(math.floor(math.sqrt(42.195)))"})], 0),
        # only copies of the spec with nothing filled in: no call, the answer stands
        ("k1#25", "ressed", [], 1),
        ("k1#35", "29.49", [], 4),
        ("k2#86", "37.214", [("read_attachment", {"name": "file_name"})], 0),
    ],
)
def test_calls_are_read_from_what_the_model_wrote(
    rid: str, answer: str, calls: list[tuple[str, dict[str, Any]]], unfilled: int
) -> None:
    reply = read_reply(text(rid), TOOLS)
    assert reply.answer == answer
    assert [(name, json.loads(args)) for name, args in reply.calls] == calls
    assert reply.unfilled == unfilled


def test_every_captured_solver_reply_with_tool_calls_is_read() -> None:
    solver = {r["id"]: r["text"] for r in REPLIES.values() if r["role"] == "solver" and "tool_calls" in r["text"]}
    replies = {rid: read_reply(t, TOOLS) for rid, t in solver.items()}  # none raises (no parse red flag)
    with_calls = sorted(rid for rid, r in replies.items() if r.calls)
    assert with_calls == sorted(["k1#4", "k1#5", "k1#11", "k1#27", "k1#33", "k1#37", "k2#86"])
    # the others copied the spec and filled in nothing: no call to run, their answer stands
    for rid in set(solver) - set(with_calls):
        assert replies[rid].unfilled > 0 and replies[rid].answer is not None, rid


def test_a_lone_copied_spec_of_a_tool_without_arguments_is_a_call() -> None:
    spec = {"type": "function", "function": FakeTools().all()[1].spec()["function"]}  # read_attachment's, as is
    reply = read_reply(json.dumps({"tool_calls": [spec]}), TOOLS)
    assert reply.calls == (("read_attachment", "{}"),) and reply.unfilled == 0
    # beside other copies it is one more copied spec, not a choice (k1#29 copied all three)
    assert read_reply(text("k1#29"), TOOLS).calls == ()


def test_balance_json_repairs_stray_and_missing_closers() -> None:
    assert json.loads(balance_json('{"a": [1, {"b": 2}]]}')) == {"a": [1, {"b": 2}]}
    assert json.loads(balance_json('x {"a": [1, {"b": "c}"')) == {"a": [1, {"b": "c}"}]}
    assert json.loads(balance_json('{"f": {"n": 1, "p": {"q": 2}}]}')) == {"f": {"n": 1, "p": {"q": 2}}}


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ('{"answer": "216"}', "216"),
        ("FINAL ANSWER: 216", "216"),
        ("The result is \\boxed{216}.", "216"),
        ('{"answer": "FINAL ANSWER: 216"}', "216"),
        ('{"answer": 216}', "216"),
        ("**Final Answer:** `216`.", "216"),
        ("It is \\boxed{\\text{Saturday}}", "Saturday"),
    ],
)
def test_one_answer_three_spellings_in_the_worker(reply: str, answer: str) -> None:
    assert read_reply(reply, {}).answer == answer
    assert marked_answer("no marks here") is None


def _solver(tools: list[Tool], *, voter: FirstToAheadByK | None = None, rounds: int = 2) -> WorkerRole:
    return WorkerRole(
        "solver", tools=tools, voter=voter or FirstToAheadByK(k=1, temperature=0.0), max_tool_rounds=rounds
    )


async def test_tool_calls_beside_an_answer_run_and_the_answer_is_dropped_and_counted() -> None:
    fake = FakeTools({"python": "stressed\n"})
    # the captured reply calls python *and* answers "ressed"; after the tool result the model answers again
    model = ScriptedModel([text("k1#27"), json.dumps({"answer": "stressed"})])
    pipeline = (
        Pipeline(model=model)
        .planner(StaticPlanner(fork_join(["reverse 'desserts'"], worker="solver")))
        .role(_solver(fake.all()))
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert result.answer == "stressed"
    r = result.results["part0"]
    assert fake.calls == [("python", {"code": "print('stressed')"})]
    assert r.tool_calls == 1 and r.votes == 2
    assert r.usage.red_flags == {"answer_dropped": 1}
    assert result.report.usage.red_flags == {"answer_dropped": 1}
    assert model.calls[1].prompt.startswith("Tool results:") and "stressed" in model.calls[1].prompt


async def test_a_python_block_is_a_python_call() -> None:
    fake = FakeTools({"python": "403.0\n"})
    block = "Let me compute it.\n```python\nprint(17 * 23 + 144 / 12)\n```\nFINAL ANSWER: 400"
    model = ScriptedModel([block, "FINAL ANSWER: 403"])
    pipeline = (
        Pipeline(model=model)
        .planner(StaticPlanner(fork_join(["compute"], worker="solver")))
        .role(_solver(fake.all()))
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert fake.calls == [("python", {"code": "print(17 * 23 + 144 / 12)"})]
    assert result.answer == "403"
    assert result.results["part0"].usage.red_flags == {"answer_dropped": 1}


async def test_calls_in_the_last_round_are_red_flagged_but_an_answer_beside_them_stands() -> None:
    fake = FakeTools()
    # rounds=0: no tool may run; the captured reply's answer is used, its calls are not run
    model = ScriptedModel([text("k1#33")])
    pipeline = (
        Pipeline(model=model)
        .planner(StaticPlanner(fork_join(["convert"], worker="solver")))
        .role(_solver(fake.all(), rounds=0))
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert result.answer == "42.195" and fake.calls == []


def test_the_prompt_shows_one_concrete_call_that_the_parser_reads() -> None:
    worker = Worker(_solver(FakeTools().all()), ScriptedModel([]), FirstToAheadByK(k=1))
    system = worker.messages(WorkItem("s", "solver", "x"), tools=True)[0]["content"]
    assert '"parameters"' not in system and '"description"' not in system  # no spec list to copy
    example = next(line for line in system.splitlines() if line.startswith('{"tool_calls"'))
    assert read_reply(example, TOOLS).calls == (("python", json.dumps({"code": "print(sum(range(1, 11)))"})),)
    assert "- python(code):" in system and "```python" in system


async def test_a_retry_never_redraws_the_greedy_sample() -> None:
    # first attempt: the greedy sample is the captured runaway reply (cut at the token limit: red-flagged) and the
    # vote fails at its cap; the coordinator's retry must not ask at temperature 0 again
    runaway = (text("k1#34"), "length", 1024)
    model = ScriptedModel([runaway, json.dumps({"answer": "26.22"})])
    voter = FirstToAheadByK(k=1, temperature=0.0, max_samples=1)
    pipeline = (
        Pipeline(model=model)
        .planner(StaticPlanner(fork_join(["convert"], worker="solver")))
        .role(WorkerRole("solver", voter=voter))
        .policy(CoordinatorPolicy(retries=1, backoff_s=0.0))
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert result.answer == "26.22"
    assert [c.temperature for c in model.calls] == [0.0, RETRY_TEMPERATURE]
    assert result.results["part0"].usage.red_flags == {"truncated": 1}


async def test_a_retry_with_a_greedy_first_sample_samples_at_the_voters_temperature() -> None:
    runaway = (text("k1#34"), "length", 1024)
    model = ScriptedModel([runaway, json.dumps({"answer": "26.22"})])
    voter = FirstToAheadByK(k=1, temperature=0.5, first_temperature=0.0, max_samples=1)
    pipeline = (
        Pipeline(model=model)
        .planner(StaticPlanner(fork_join(["convert"], worker="solver")))
        .role(WorkerRole("solver", voter=voter))
        .policy(CoordinatorPolicy(retries=1, backoff_s=0.0))
        .checkpoint(None)
    )
    await pipeline.run("t")
    assert [c.temperature for c in model.calls] == [0.0, 0.5]


async def test_python_tool_takes_math_signs_and_prints_like_a_script(tmp_path: Path) -> None:
    py = python_tool(Workspace(tmp_path), Limits(timeout_s=30.0, memory_mb=256))
    # the code of the captured call (k1#4): the division sign made the whole program fail before
    assert await py.call({"code": "17 * 23 + 144 ÷ 12"}) == "403.0\n"
    times, minus = "\u00d7", "\u2212"
    code = f"print('3 {times} 4 =', 3 {times} 4)  # {times} in a comment"
    assert await py.call({"code": code}) == f"3 {times} 4 = 12\n"
    assert await py.call({"code": f"print(10 {minus} 2\u00b2)"}) == "6\n"
    assert await py.call({"code": "print('stressed'[::-1])"}) == "desserts\n"  # no "None" after it
    root = await py.call({"code": "print(\u221a16)"})
    assert root.startswith("exit code 1") and "math.sqrt" in root


async def test_native_tool_rounds_force_the_first_call_then_let_the_model_choose() -> None:
    fake = FakeTools({"python": "403.0\n"})
    # what OpenAICompatible makes of a native tool call: the OpenAI shape, arguments as a JSON string
    native = json.dumps(
        {
            "tool_calls": [
                {
                    "id": "chatcmpl-tool-1",
                    "type": "function",
                    "function": {"name": "python", "arguments": json.dumps({"code": "print(17 * 23 + 144 / 12)"})},
                }
            ]
        }
    )
    model = ScriptedModel([native, json.dumps({"answer": "403"})], native_tools=True, structured_outputs=True)
    role = WorkerRole(
        "solver", tools=fake.all(), voter=FirstToAheadByK(k=1, temperature=0.0), max_tool_rounds=1, must_act=True
    )
    pipeline = (
        Pipeline(model=model)
        .planner(StaticPlanner(fork_join(["compute"], worker="solver")))
        .role(role)
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert result.answer == "403" and fake.calls == [("python", {"code": "print(17 * 23 + 144 / 12)"})]
    first, last = model.calls
    assert first.options["tool_choice"] == "required"
    assert [t["function"]["name"] for t in first.options["tools"]] == ["python", "read_attachment", "calculator"]
    # the last round may only answer: no tools, the reply constrained to {"answer": "..."}
    assert set(last.options) == {"response_format"}
    assert last.options["response_format"]["json_schema"]["schema"]["required"] == ["answer"]


async def test_without_native_tools_a_tool_round_is_constrained_to_an_answer_or_calls_of_the_roles_tools() -> None:
    model = ScriptedModel([json.dumps({"answer": "done"})], structured_outputs=True)
    pipeline = (
        Pipeline(model=model)
        .planner(StaticPlanner(fork_join(["compute"], worker="solver")))
        .role(_solver(FakeTools().all()))
        .checkpoint(None)
    )
    assert (await pipeline.run("t")).answer == "done"
    schema = model.calls[0].options["response_format"]["json_schema"]["schema"]
    answer, calls = schema["anyOf"]
    assert answer["required"] == ["answer"]
    names = [c["properties"]["name"]["enum"] for c in calls["properties"]["tool_calls"]["items"]["anyOf"]]
    assert names == [["python"], ["read_attachment"], ["calculator"]]


async def test_a_python_block_when_no_tool_round_is_left_is_part_of_a_plain_answer() -> None:
    fake = FakeTools()
    reply = "I wrote tests/test_issue.py:\n```python\ndef test_bug():\n    assert f() == 1\n```"
    model = ScriptedModel([reply])
    pipeline = (
        Pipeline(model=model)
        .planner(StaticPlanner(fork_join(["write a test"], worker="solver")))
        .role(_solver(fake.all(), rounds=0))
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert fake.calls == [] and result.answer is not None and result.answer.startswith("I wrote tests/test_issue.py:")
