"""The GAIA scorer: quasi-exact match of a model answer against the ground truth, by the official rules.

The rules, in order of the ground truth's shape:

1. The ground truth is a number (``float()`` accepts it): remove every ``$``, ``%`` and ``,`` from the model
   answer and compare the two as floats (an answer that is still not a number is wrong).
2. The ground truth contains ``,`` or ``;``: it is a list. Split both on ``[,;]``; the lists must have the same
   length and match element by element, in order: where the ground-truth element is a number, as in rule 1;
   otherwise as strings with all whitespace removed and lowercased (punctuation kept).
3. Otherwise compare as strings with all whitespace removed, lowercased, and ASCII punctuation removed.

So ``42,000`` scores against ``42000`` but ``1000`` does not score against ``1,000`` (a two-element list).
"""

from __future__ import annotations

import re
import string

__all__ = ["normalize_number", "normalize_text", "score"]

_SPACE = re.compile(r"\s")
_LIST_SEP = re.compile(r"[,;]")
_NUMBER_NOISE = str.maketrans("", "", "$%,")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def normalize_number(text: str) -> float | None:
    """``text`` as a float after removing ``$``, ``%`` and ``,``; None when it is not a number."""
    return _as_float(text.translate(_NUMBER_NOISE))


def normalize_text(text: str, *, keep_punctuation: bool = False) -> str:
    """``text`` with all whitespace removed, lowercased, and (unless kept) ASCII punctuation removed."""
    out = _SPACE.sub("", text).lower()
    return out if keep_punctuation else out.translate(_PUNCTUATION)


def _number_matches(model_answer: str, truth: float) -> bool:
    value = normalize_number(model_answer)
    return value is not None and value == truth


def score(model_answer: str, ground_truth: str) -> bool:
    """Whether ``model_answer`` is right for ``ground_truth`` under the official GAIA rules (module docstring).

    Args:
        model_answer: what the model answered (the text after ``FINAL ANSWER:``).
        ground_truth: the question's ``Final answer``.
    """
    truth = _as_float(ground_truth)
    if truth is not None:
        return _number_matches(model_answer, truth)
    if _LIST_SEP.search(ground_truth):
        truths = _LIST_SEP.split(ground_truth)
        answers = _LIST_SEP.split(model_answer)
        if len(truths) != len(answers):
            return False
        for answer, expected in zip(answers, truths, strict=True):
            number = _as_float(expected)
            if number is not None:
                if not _number_matches(answer, number):
                    return False
            elif normalize_text(answer, keep_punctuation=True) != normalize_text(expected, keep_punctuation=True):
                return False
        return True
    return normalize_text(model_answer) == normalize_text(ground_truth)
