"""A full-detail trace's extra data: every sample's text, the losing answers (``detail="full"``, see
:meth:`mdap.agents.Pipeline.trace`)."""

from __future__ import annotations

import json
from typing import Any

from mdap.voters.observe import VoteObserver, VoteRecord

__all__ = ["Recorder", "shown_answer", "vote_detail"]


class Recorder:
    """A vote observer that keeps the last vote's record and passes it on to the observer it replaced (a
    tracer's), so a full-detail trace and OpenTelemetry spans both see every vote."""

    __slots__ = ("last", "next")

    def __init__(self, next_: VoteObserver | None) -> None:
        self.next = next_
        self.last: VoteRecord | None = None

    def vote(self, record: VoteRecord) -> None:
        self.last = record
        if self.next is not None:
            self.next.vote(record)


def vote_detail(record: VoteRecord | None) -> dict[str, Any]:
    """``samples`` (each sample's text, its answer or red flag) and ``losing`` (each answer that lost, with its
    votes) of one vote, for its ``vote_decided`` event."""
    if record is None:
        return {}
    samples = [
        {
            "text": r.sample.text,
            "answer": shown_answer(r.answer),
            "red_flag": r.flag,
            "finish_reason": r.sample.finish_reason,
        }
        for r in record.samples
    ]
    counts: dict[str, int] = {}
    decided = shown_answer(record.answer)
    for r in record.samples:
        shown = shown_answer(r.answer)
        if shown is not None and shown != decided:
            counts[shown] = counts.get(shown, 0) + 1
    losing = [{"answer": a, "votes": c} for a, c in sorted(counts.items(), key=lambda kv: -kv[1])]
    return {"sample_texts": samples, "losing": losing}


def shown_answer(answer: Any) -> str | None:
    """A worker's voted reply as text: an answer's text, a tool round's calls as JSON."""
    if answer is None:
        return None
    if isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], str):
        kind: str = answer[0]
        payload: Any = answer[1]
        if kind == "answer":
            return str(payload)
        if kind == "tools":
            calls: Any = getattr(payload, "calls", payload)  # a ToolCalls vote, or plain (name, arguments) pairs
            return json.dumps([{"name": n, "arguments": a} for n, a in calls])
        return kind
    return repr(answer)
