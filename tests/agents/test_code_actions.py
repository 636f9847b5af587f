"""Tool rounds as a small model reads them (issue 17, measured with Qwen2.5-Coder-0.5B through vLLM):

- code as actions: a role with ``code_actions`` is asked for a python block, its program's output comes back as
  output, and no native tools or JSON schema go with the request;
- an answer read off a program's output (``answer_from_output``) instead of a restatement that drops items;
- native tool rounds go back as OpenAI ``tool_calls`` and ``tool`` messages, not as JSON text to copy;
- a role that must act acts again (``tool_choice="required"``) after a round whose calls all failed, and a reply
  that repeats the round before is red-flagged;
- programs with tool-call debris at their end run without it, as scripts, and say when they printed nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mdap.agents import Tool, WorkerRole, WorkItem, Workspace, python_tool
from mdap.agents._pycode import computes_nothing, runnable, without_debris
from mdap.agents.replies import ToolCalls, call_key
from mdap.agents.tools import NO_OUTPUT, tool_failed
from mdap.agents.worker import Worker, tool_exchange
from mdap.errors import ConfigError
from mdap.models import ScriptedModel
from mdap.voters import FirstToAheadByK

VOTER = FirstToAheadByK(k=1, temperature=0.7, first_temperature=0.0, max_samples=3)


class Recorded:
    """A python tool stand-in: records each program and answers from a list of outputs."""

    def __init__(self, *outputs: str) -> None:
        self.programs: list[str] = []
        self.outputs = list(outputs)

    def tool(self) -> Tool:
        async def run(args: dict[str, Any]) -> str:
            self.programs.append(str(args["code"]))
            return self.outputs.pop(0)

        schema = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
        return Tool("python", "Run Python code.", schema, run)


def _item(instruction: str = "Work out the answer.\n\nQuestion: How many seconds are there in 3 days?") -> WorkItem:
    return WorkItem(id="solve", role="solver", instruction=instruction)


def _block(code: str) -> str:
    return f"Here is the program:\n\n```python\n{code}\n```\n"


# -- code as actions ------------------------------------------------------------------------------------------


async def test_code_actions_ask_for_a_block_and_show_its_output() -> None:
    py = Recorded("259200\n")
    model = ScriptedModel([_block("print(3 * 24 * 60 * 60)"), '{"answer": "259200"}'], native_tools=True)
    role = WorkerRole("solver", tools=[py.tool()], voter=VOTER, code_actions=True, max_tool_rounds=3)
    out = await Worker(role, model, VOTER).run(_item())
    assert out.answer == "259200"
    assert py.programs == ["print(3 * 24 * 60 * 60)"]
    first, second = model.calls
    system = first.messages[0]["content"]
    assert "```python block" in system and '{"answer"' not in system  # the answer's form comes after the output
    assert first.options == {} and second.options == {}  # no native tools, no schema: a block is no JSON
    assistant, user = second.messages[-2:]
    assert assistant == {"role": "assistant", "content": "```python\nprint(3 * 24 * 60 * 60)\n```"}
    assert user["content"].startswith("Output:\n```\n259200\n```\n")
    assert '{"answer": "<the result>"}' in user["content"] and "2 more programs at most" in user["content"]


def test_code_actions_need_a_python_tool() -> None:
    calc = Tool("calculator", "Evaluate.", {"type": "object", "properties": {}}, lambda args: "1")
    with pytest.raises(ConfigError, match="code_actions needs a tool named python"):
        WorkerRole("solver", tools=[calc], code_actions=True)


async def test_the_answer_is_read_off_the_output_not_restated() -> None:
    # captured: the output "apple, kiwi, mango, pear" came back as {"answer": "kiwi, mango, pear"}
    py = Recorded("apple, kiwi, mango, pear\n")
    model = ScriptedModel([_block("print(', '.join(sorted(['pear', 'apple', 'mango', 'kiwi'])))"), "unused"])

    def one_line(item: WorkItem, output: str) -> str | None:
        text = output.strip()
        return text if "\n" not in text else None

    role = WorkerRole("solver", tools=[py.tool()], code_actions=True, answer_from_output=one_line)
    out = await Worker(role, model, VOTER).run(_item())
    assert out.answer == "apple, kiwi, mango, pear"
    assert model.remaining == 1 and out.tool_calls == 1  # the model was not asked to restate it


async def test_an_output_that_is_no_answer_goes_back_to_the_model() -> None:
    py = Recorded("exit code 1\nNameError: name 'stressed' is not defined\n", "desserts\n")
    model = ScriptedModel([_block("print(stressed[::-1])"), _block("print('stressed'[::-1])"), "never"])
    role = WorkerRole(
        "solver", tools=[py.tool()], code_actions=True, answer_from_output=lambda item, output: output.strip()
    )
    out = await Worker(role, model, VOTER).run(_item())
    assert out.answer == "desserts"  # a failed program is never an answer, the fixed one's output is
    assert py.programs == ["print(stressed[::-1])", "print('stressed'[::-1])"]
    assert "fixed ```python block" in model.calls[1].prompt


async def test_a_role_that_must_act_in_code_writes_a_program_before_it_answers() -> None:
    # captured: asked for a program, the model answered "17 x 23 + 144 / 12 = 411 + 12 = 423" from memory; after a
    # program that failed, it answered a name the file does not hold ("Tom Becker") instead of fixing the program
    py = Recorded("exit code 1\nAttributeError: 'NoneType' object has no attribute 'group'\n", "Priya Natarajan\n")
    script = [
        '{"answer": "Tom Becker"}',  # no program in the first round: red-flagged, redrawn warmer
        _block("import re\nprint(re.search('Lead: (.*)', open('notes.txt').read()).group(1))"),
        '{"answer": "Tom Becker"}',  # an answer right after the program failed: red-flagged too
        _block("print(open('notes.txt').read().split('lead the budget review: ')[1].split('.')[0])"),
        '{"answer": "Priya Natarajan"}',
    ]
    model = ScriptedModel(script)
    role = WorkerRole("solver", tools=[py.tool()], code_actions=True, must_act=True, max_tool_rounds=3)
    out = await Worker(role, model, VOTER).run(_item())
    assert out.answer == "Priya Natarajan" and out.tool_calls == 2
    assert out.usage.red_flags == {"must_act": 2}
    assert [c.temperature for c in model.calls] == [0.0, 0.7, 0.0, 0.7, 0.0]
    after_failure = model.calls[2].prompt
    assert "The program failed or printed nothing: reply with a fixed ```python block" in after_failure
    assert '{"answer"' not in after_failure  # no answer is offered after a failure


@pytest.mark.parametrize("constant", ['print("stressed")', 'print("1 January 2000 fell on a Monday.")', '"Monday"'])
async def test_a_program_that_only_prints_a_constant_is_no_action(constant: str) -> None:
    # captured: asked to reverse "stressed", the greedy program was print("stressed")
    py = Recorded("desserts\n")
    script = [_block(constant), _block("print('stressed'[::-1])"), '{"answer": "desserts"}']
    model = ScriptedModel(script)
    role = WorkerRole("solver", tools=[py.tool()], code_actions=True, must_act=True)
    out = await Worker(role, model, VOTER).run(_item())
    assert out.answer == "desserts" and py.programs == ["print('stressed'[::-1])"]
    assert out.usage.red_flags == {"must_act": 1}


def test_computes_nothing_judges_only_programs_of_constants() -> None:
    assert computes_nothing('print("a", end="")') and computes_nothing("# a comment\nprint(5)")
    assert not computes_nothing("print(17 * 23)") and not computes_nothing("w = 'stressed'\nprint(w[::-1])")
    assert not computes_nothing("") and not computes_nothing("print(1")  # no program, or Python's to report


# -- native tool rounds ---------------------------------------------------------------------------------------


def _native_call(code: str, cid: str = "chatcmpl-tool-1") -> str:
    call = {"id": cid, "type": "function", "function": {"name": "python", "arguments": json.dumps({"code": code})}}
    return json.dumps({"tool_calls": [call]})


async def test_native_rounds_go_back_as_tool_messages() -> None:
    # captured: results sent back as JSON text were copied into the next call as its code
    py = Recorded("6480\n")
    model = ScriptedModel([_native_call("print(3 * 2160)"), '{"answer": "6480"}'], native_tools=True)
    role = WorkerRole("solver", tools=[py.tool()], must_act=True)
    out = await Worker(role, model, VOTER).run(_item())
    assert out.answer == "6480"
    assistant, tool, user = model.calls[1].messages[-3:]
    assert assistant["role"] == "assistant" and assistant["content"] == ""
    (call,) = assistant["tool_calls"]
    assert call["id"] == "call_0_0" and call["type"] == "function"
    assert call["function"]["name"] == "python" and json.loads(call["function"]["arguments"]) == {
        "code": "print(3 * 2160)"
    }
    assert tool == {"role": "tool", "tool_call_id": "call_0_0", "content": "6480\n"}
    assert user["role"] == "user" and "fix a call that failed" in user["content"]


def test_the_text_protocol_keeps_results_in_a_user_message() -> None:
    decided = ToolCalls.of((("python", json.dumps({"code": "print(1)"})),))
    text = tool_exchange(0, decided, [("call_0_0", "python", "1\n")], 0, style="text")
    assert [m["role"] for m in text] == ["assistant", "user"]
    assert "tool_calls" not in text[0] and text[1]["content"].startswith("Tool results:\n")
    assert "no more tool calls" in text[1]["content"]


async def test_a_role_that_must_act_acts_again_after_its_calls_failed() -> None:
    py = Recorded("exit code 1\nNameError: name 'stressed' is not defined\n", "desserts\n")
    replies = [_native_call("print(stressed[::-1])"), _native_call("print('stressed'[::-1])"), '{"answer": "desserts"}']
    model = ScriptedModel(replies, native_tools=True)
    role = WorkerRole("solver", tools=[py.tool()], must_act=True)
    out = await Worker(role, model, VOTER).run(_item())
    assert out.answer == "desserts"
    assert [c.options["tool_choice"] for c in model.calls] == ["required", "required", "auto"]


async def test_a_repeat_of_the_round_before_is_red_flagged() -> None:
    # captured: after an error, the greedy sample wrote the same failing call again
    py = Recorded("exit code 1\nNameError: name 'stressed' is not defined\n", "desserts\n")
    same = _native_call("print(stressed[::-1])")
    model = ScriptedModel([same, same, _native_call("print('stressed'[::-1])"), '{"answer": "desserts"}'])
    role = WorkerRole("solver", tools=[py.tool()])
    out = await Worker(role, model, VOTER).run(_item())
    assert out.answer == "desserts"
    assert out.usage.red_flags == {"repeated_call": 1}
    assert py.programs == ["print(stressed[::-1])", "print('stressed'[::-1])"]
    assert [c.temperature for c in model.calls] == [0.0, 0.0, 0.7, 0.0]  # the repeat is redrawn, not rerun


# -- programs as small models write them ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "runs", "cut"),
    [
        ("print(3 * 2160)}", "print(3 * 2160)", "}"),  # captured through vLLM's hermes parser
        ('print(17 \u00d7 23)}"}', "print(17 * 23)", '}"}'),  # the multiplication sign too
        ("x = [1, 2]]", "x = [1, 2]", "]"),
        (
            'def f(n): return n + 1}}</tool_call> <tool_call>{"\n  }}',  # captured, the end cut
            "def f(n): return n + 1",
            '}}</tool_call> <tool_call>{"\n  }}',
        ),
        ("print('a')", "print('a')", ""),  # parses: untouched
        ("print(1", "print(1", ""),  # no cut parses: left for Python to report
        ("}}}", "}}}", ""),  # nothing but debris is no program
        ("x = 1" + "}" * 9, "x = 1" + "}" * 9, ""),  # more than debris: a broken program
    ],
)
def test_tool_call_debris_is_cut_off_only_when_that_makes_the_code_parse(code: str, runs: str, cut: str) -> None:
    assert runnable(code) == (runs, cut)


def test_debris_is_cut_before_the_vote_too() -> None:
    assert call_key("python", json.dumps({"code": "print(3 * 2160)}"})) == call_key(
        "python", json.dumps({"code": "print(3 * 2160)"})
    )
    assert without_debris("a = 1\n") == ("a = 1\n", "")


@pytest.mark.sandbox
async def test_python_runs_a_script_and_shows_its_last_value(tmp_path: Path) -> None:
    py = python_tool(Workspace(tmp_path))
    assert await py.call({"code": "x = 2\nx * 21"}) == "42\n"
    assert await py.call({"code": "print(5)"}) == "5\n"  # the value None of print() is not shown
    assert await py.call({"code": "sorted(['pear', 'apple'])"}) == "['apple', 'pear']\n"
    nothing = await py.call({"code": "def is_prime(n): return n > 1"})
    assert nothing == NO_OUTPUT + "\n" and tool_failed(nothing)
    repaired = await py.call({"code": "print(3 * 2160)}"})
    assert repaired.startswith("6480\n") and "'}'" in repaired and not tool_failed(repaired)
    broken = await py.call({"code": "print(1"})
    assert broken.startswith("exit code 1\n") and "SyntaxError" in broken and tool_failed(broken)
    assert "ast.py" not in broken and "During handling" not in broken  # the program's own error, once
    failed = await py.call({"code": "print(stressed[::-1])"})
    assert "NameError" in failed and 'File "<tool>", line 1' in failed and "print(stressed[::-1])" in failed


def test_tool_failed_reads_mdap_tool_outputs() -> None:
    assert tool_failed("error: missing arguments: code")
    assert tool_failed("exit code 2\n")
    assert not tool_failed("exit code 0\nok\n")  # the shell tool's success
    assert not tool_failed("25\n")
