"""WorkerRole: a kind of worker a plan can assign subtasks to."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mdap.errors import ConfigError
from mdap.models import ChatModel
from mdap.voters import Voter, VoterSpec

from .tools import Tool
from .work import WorkItem

__all__ = ["AnswerParser", "OutputAnswer", "PassThrough", "WorkerRole", "default_voter"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")

AnswerParser = Callable[[str], str]
"""Canonicalizes a final answer before the vote (equal canonical answers are one vote); raise RedFlag to
discard a malformed one. The default collapses whitespace."""

PassThrough = Callable[[WorkItem], "str | None"]
"""An answer a subtask has without asking the model (e.g. a dependency's answer that is already final), or None
to ask it. The answer still goes through the role's answer parser (a red flag there asks the model)."""

OutputAnswer = Callable[[WorkItem, str], "str | None"]
"""The answer a program's output already is (e.g. one line in the form of a final answer), or None to ask the
model: given the subtask and what its one successful python call printed. The answer goes through the role's
answer parser. A small model asked to restate an output drops or changes parts of it ("apple, kiwi, mango, pear"
came back as "kiwi, mango, pear")."""


def default_voter() -> Voter:
    """The voter of a role that names none: a default :class:`~mdap.voters.VoterSpec` (first-to-ahead-by-2, at most
    20 samples per vote, temperature 0.3), as in a roles file."""
    return VoterSpec().build()


@dataclass(frozen=True)
class WorkerRole:
    """A worker role: who executes the subtasks a plan assigns to ``name``.

    Args:
        name: the role name plans use.
        description: what the role is good at (the planner reads it).
        model: its model; None = the pipeline's default model.
        adapter: the LoRA adapter (served model name) its samples come from; applied to the voter's
            ``adapter`` when the voter has none.
        tools: tools it may call (OpenAI function format).
        voter: how its decisions are voted (``FirstToAheadByK``, ``Majority``); None = :func:`default_voter`.
        system_prompt: the role's instructions, before the worker protocol.
        max_tool_rounds: tool-call rounds before it must answer.
        answer_parser: canonicalizes final answers for the vote.
        max_answer_chars: longer final answers are red-flagged (a sign of confusion).
        plain_answers: a reply in none of the answer spellings (``{"answer": ...}``, ``FINAL ANSWER: ...``,
            ``\\boxed{...}``) is taken whole as the answer; False red-flags it (``format``).
        pass_through: decides a subtask without the model when it returns an answer (see :data:`PassThrough`).
        must_act: the first reply, and each reply after a round whose calls all failed (:func:`~.tools.tool_failed`),
            must call a tool: sent with ``tool_choice="required"`` where the model takes native tool calls (a
            small model asked with ``"auto"`` writes the call as bare JSON, answers from memory, or answers
            after a failed call instead of fixing it). With ``code_actions``, a reply without a program in such a
            round, or with a program that only prints constants, is red-flagged (``must_act``); nothing is forced
            with the JSON text protocol.
        code_actions: the role acts in code: its prompt asks for a fenced python block, which runs with its
            ``python`` tool, and the program's output comes back as output (code as an action). No native tools
            or JSON schema go with its tool rounds; its other tools stay callable as JSON. Small coder models
            write far better programs in a block than inside a JSON string (Qwen2.5-Coder-0.5B on GAIA's mini
            level 1: 7/8 right programs against 3/8 as native tool calls, greedy).
        answer_from_output: reads the answer off a round's output without asking the model (see
            :data:`OutputAnswer`): after a round of one python call that worked.

    Raises:
        ConfigError: a bad name, duplicate tool names, max_tool_rounds < 0, code_actions without a ``python`` tool,
            or a voter that is no voter or has
            ``k="auto"`` (a role's margin is not calibrated: give an integer k).
    """

    name: str
    description: str = ""
    model: ChatModel | None = None
    adapter: str | None = None
    tools: Sequence[Tool] = ()
    voter: Voter | None = None
    system_prompt: str = ""
    max_tool_rounds: int = 6
    answer_parser: AnswerParser | None = field(default=None, repr=False)
    max_answer_chars: int = 20_000
    plain_answers: bool = True
    pass_through: PassThrough | None = field(default=None, repr=False)
    must_act: bool = False
    code_actions: bool = False
    answer_from_output: OutputAnswer | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"role name {self.name!r} must start with a letter: letters, digits, '_', '-'")
        bad = [t for t in self.tools if not isinstance(t, Tool)]
        if bad:
            raise ConfigError(f"role {self.name}: tools must be mdap.agents.Tool objects, got {type(bad[0]).__name__}")
        names = [t.name for t in self.tools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"role {self.name}: duplicate tool names {', '.join(dupes)}")
        if self.name == "planner":
            raise ConfigError("'planner' is reserved for the planner's stats in reports; name the role otherwise")
        if self.max_tool_rounds < 0:
            raise ConfigError(f"role {self.name}: max_tool_rounds must be >= 0")
        if self.code_actions and "python" not in names:
            raise ConfigError(f"role {self.name}: code_actions needs a tool named python (e.g. python_tool(workspace))")
        if self.voter is not None:
            _check_voter(self.name, self.voter)
        object.__setattr__(self, "tools", tuple(self.tools))


def _check_voter(role: str, voter: object) -> None:
    """Refuse, when the role is defined, a voter that would fail only once the run reached the role's first vote.

    Raises:
        ConfigError: ``voter`` has no ``decide``, or its margin is ``k="auto"`` (calibrated on chains, not on a
            role's subtasks).
    """
    if not callable(getattr(voter, "decide", None)):
        raise ConfigError(f"role {role!r}: voter must have decide(model, messages, parse), got {type(voter).__name__}")
    if getattr(voter, "k", None) == "auto":
        raise ConfigError(
            f"role {role!r}: k='auto' is not calibrated for pipeline roles; give the margin, e.g. "
            'FirstToAheadByK(k=3) ("k": 3 in a roles file), or pick it with '
            "mdap.voters.k_min(p, steps) from the role's per-sample accuracy p"
        )
