"""The GAIA scorer on the official rules' edge cases, final-answer extraction, and the calculator tool."""

from __future__ import annotations

import pytest

from mdap.errors import ToolError
from mdap.evals.gaia import calculate, calculator_tool, extract_final_answer, score

# (model_answer, ground_truth, expected): the issue's edge cases, in score()'s argument order.
ISSUE_CASES = [
    ("42,000", "42000", True),  # a numeric truth: commas are stripped from the answer
    ("$1,000", "1000", True),  # ... and dollar signs
    ("5%", "5", True),  # ... and percent signs
    ("1000 USD", "1000", False),  # a unit word is not stripped: not a number
    ("b, a", "a, b", False),  # lists compare in order
    ("A ; B", "a, b", True),  # either separator, whitespace and case ignored
    ("Sea Gull", "seagull", True),  # strings ignore whitespace and case
    ("the Paris", "Paris", False),  # articles are not removed
    ("1000", "1,000", False),  # a truth with a comma is a two-element list, not a number
]


@pytest.mark.parametrize(("model_answer", "ground_truth", "expected"), ISSUE_CASES)
def test_issue_edge_cases(model_answer: str, ground_truth: str, expected: bool) -> None:
    assert score(model_answer, ground_truth) is expected


@pytest.mark.parametrize(
    ("model_answer", "ground_truth", "expected"),
    [
        ("42", "42.0", True),  # numbers compare as floats
        ("42.5", "42", False),
        ("forty-two", "42", False),
        ("", "42", False),
        (" 17 ", "17", True),
        ("Paris.", "Paris", True),  # punctuation is stripped from plain strings
        ("St. Louis", "st louis", True),
        ("New-York", "New York", True),
        ("Londres", "London", False),
        ("1, 2, 3", "1, 2, 3", True),
        ("1.0; 2,3", "1, 2, 3", True),  # numeric elements compare as numbers
        ("$1, 2, 3", "1, 2, 3", True),  # ... after stripping $ and %
        ("1, 2", "1, 2, 3", False),  # lengths differ
        ("1, 2, 3, 4", "1, 2, 3", False),
        ("Toronto, 8.3", "Toronto, 8.3", True),
        ("toronto,8.30", "Toronto, 8.3", True),
        ("Toronto, 8.4", "Toronto, 8.3", False),
        ("st. louis, paris", "st louis, paris", False),  # list elements keep their punctuation
        ("Claw Hammer, Socket Wrench", "clawhammer, socketwrench", True),
    ],
)
def test_more_rules(model_answer: str, ground_truth: str, expected: bool) -> None:
    assert score(model_answer, ground_truth) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I computed it.\nFINAL ANSWER: 42", "42"),
        ("final answer: Paris.", "Paris"),
        ("**FINAL ANSWER:** `a, b`", "a, b"),
        ("FINAL ANSWER:\n\n  Sea   Gull  \nbecause ...", "Sea Gull"),
        ("FINAL ANSWER: 1\nlater: FINAL ANSWER: 2", "2"),
        ("FINAL ANSWER: 3.14", "3.14"),
        ("FINAL ANSWER: 3.", "3"),
        ("FINAL ANSWER: Washington D.C.", "Washington D.C"),
        ('FINAL ANSWER: "yes"', "yes"),
        ("The answer is 42", None),
        ("FINAL ANSWER:", None),
    ],
)
def test_extract_final_answer(text: str, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


@pytest.mark.parametrize(
    ("expression", "value"),
    [("17 * 23 + 144 / 12", "403"), ("2^10", "1024"), ("0.1 + 0.2", "0.3"), ("round(42.195 / 1.609344, 2)", "26.22")],
)
def test_calculator(expression: str, value: str) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("__import__('os').system('true')", "only takes"),
        ("1 / 0", "ZeroDivisionError"),
        ("10 ** 10 ** 10", "too large"),
        ("1 +", "not an arithmetic expression"),
        ("", "1 to 500 characters"),
    ],
)
def test_calculator_refuses(expression: str, error: str) -> None:
    with pytest.raises(ToolError, match=error):
        calculate(expression)


async def test_calculator_tool_returns_errors_as_text() -> None:
    tool = calculator_tool()
    assert await tool.call({"expression": "sqrt(81)"}) == "9"
    assert (await tool.call({"expression": "open('x')"})).startswith("error: the calculator only takes")
    assert await tool.call({}) == "error: missing arguments: expression"
