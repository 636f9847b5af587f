"""Pipeline overhead per subtask: mdap's coordinator vs. a plain LangGraph graph, with a zero-latency model.

Every side runs the same work per subtask -- one mdap worker call (prompt, one vote, one simulated sample) --
so the difference is the framework. For each DAG shape and size it measures:
  * bare: the worker called n times in a plain loop (the work itself, no framework), with the same dependency
    artifacts in its prompts as in the pipeline;
  * mdap: ``Pipeline.run`` with a StaticPlanner (plan -> approve -> execute -> finish; the execute node runs
    the DAG with bounded asyncio, 16 at a time, timeout + retries armed), without and with SQLite checkpoints;
  * langgraph: a plain StateGraph spending one ``Send`` per subtask (wide, random by level) or one super-step
    per subtask (deep), no checkpointer.
Overhead per subtask = (wall - bare) / n. Shapes: wide (n independent subtasks), deep (a chain of n), random
(each subtask depends on 0-3 of the 50 before it). Each figure is the best of --repeat interleaved runs (the
machine is shared).

    python benchmarks/pipeline_overhead.py                  # 1,000 and 10,000 subtasks
    python benchmarks/pipeline_overhead.py --sizes 1000     # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from mdap.agents import Artifact, Pipeline, WorkerRole, WorkItem
from mdap.agents.worker import Worker
from mdap.models import SimulatedModel
from mdap.planners import Plan, StaticPlanner, Subtask
from mdap.types import Message
from mdap.voters import FirstToAheadByK

VOTER = FirstToAheadByK(k=1, temperature=0.0, max_samples=3)


def oracle(messages: Sequence[Message]) -> str:
    return '{"answer": "ok"}'


def make_plan(shape: str, n: int, seed: int = 0) -> Plan:
    rng = random.Random(seed)
    subtasks = []
    for i in range(n):
        if shape == "wide":
            deps: list[str] = []
        elif shape == "deep":
            deps = [f"s{i - 1}"] if i else []
        else:
            window = list(range(max(0, i - 50), i))
            deps = [f"s{j}" for j in rng.sample(window, min(len(window), rng.randint(0, 3)))]
        subtasks.append(Subtask(id=f"s{i}", instruction=f"do step {i}", role="w", depends_on=deps))
    return Plan(subtasks=subtasks)


def make_worker() -> Worker:
    return Worker(WorkerRole("w", voter=VOTER), SimulatedModel(oracle), VOTER)


async def bare(plan: Plan) -> float:
    """The work itself: each subtask's worker call, with the same dependency artifacts the pipeline passes."""
    worker = make_worker()
    items = [
        WorkItem(s.id, s.role, s.instruction, [Artifact(d, True, "ok") for d in s.depends_on]) for s in plan.subtasks
    ]
    t0 = time.perf_counter()
    for item in items:
        out = await worker.run(item)
        assert out.answer == "ok"
    return time.perf_counter() - t0


async def mdap_pipeline(plan: Plan, checkpoint: Path | None) -> float:
    pipeline = (
        Pipeline("bench", model=SimulatedModel(oracle))
        .planner(StaticPlanner(plan))
        .role("w", voter=VOTER)
        .policy(max_concurrency=16, max_pending=len(plan.subtasks))
        .checkpoint(checkpoint)
    )
    pipeline.compile()
    t0 = time.perf_counter()
    result = await pipeline.run("bench")
    wall = time.perf_counter() - t0
    assert result.ok and len(result.results) == len(plan.subtasks), result.error
    return wall


class WideState(TypedDict, total=False):
    ids: list[str]
    done: Annotated[list[str], operator.add]


class DeepState(TypedDict, total=False):
    ids: list[str]
    i: int
    done: Annotated[list[str], operator.add]


class LevelState(TypedDict, total=False):
    levels: list[list[str]]
    level: int
    done: Annotated[list[str], operator.add]


def plain_langgraph(shape: str, plan: Plan) -> Any:
    worker = make_worker()
    by_id = plan.by_id()

    async def work_one(sid: str) -> dict[str, Any]:
        s = by_id[sid]
        out = await worker.run(WorkItem(s.id, s.role, s.instruction, [Artifact(d, True, "ok") for d in s.depends_on]))
        assert out.answer == "ok"
        return {"done": [sid]}

    if shape == "deep":

        async def step(state: DeepState) -> dict[str, Any]:
            i = state.get("i", 0)
            out = await work_one(state["ids"][i])
            return {**out, "i": i + 1}

        deep: StateGraph[Any, Any, Any, Any] = StateGraph(DeepState)
        deep.add_node("work", step)
        deep.add_edge(START, "work")
        deep.add_conditional_edges("work", lambda s: "work" if s["i"] < len(s["ids"]) else END, ["work", END])
        return deep.compile(), {"ids": [s.id for s in plan.subtasks], "i": 0}

    async def work(payload: dict[str, str]) -> dict[str, Any]:
        return await work_one(payload["id"])

    if shape == "wide":
        wide: StateGraph[Any, Any, Any, Any] = StateGraph(WideState)
        wide.add_node("work", work)
        wide.add_conditional_edges(START, lambda s: [Send("work", {"id": i}) for i in s["ids"]], ["work"])
        wide.add_edge("work", END)
        return wide.compile(), {"ids": [s.id for s in plan.subtasks]}

    depth: dict[str, int] = {}
    for s in plan.subtasks:  # subtasks are listed after their dependencies
        depth[s.id] = 1 + max((depth[d] for d in s.depends_on), default=-1)
    levels: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for sid, d in depth.items():
        levels[d].append(sid)

    async def advance(state: LevelState) -> dict[str, Any]:
        return {"level": state.get("level", -1) + 1}

    def fan(state: LevelState) -> Any:
        if state["level"] >= len(state["levels"]):
            return END
        return [Send("work", {"id": i}) for i in state["levels"][state["level"]]]

    g: StateGraph[Any, Any, Any, Any] = StateGraph(LevelState)
    g.add_node("advance", advance)
    g.add_node("work", work)
    g.add_edge(START, "advance")
    g.add_conditional_edges("advance", fan, ["work", END])
    g.add_edge("work", "advance")
    return g.compile(), {"levels": levels, "level": -1}


async def langgraph_run(shape: str, plan: Plan) -> float:
    graph, inp = plain_langgraph(shape, plan)
    n = len(plan.subtasks)
    t0 = time.perf_counter()
    final = await graph.ainvoke(inp, {"recursion_limit": 3 * n + 10})
    wall = time.perf_counter() - t0
    assert len(final["done"]) == n
    return wall


def timed(coro_fn: Any, *args: Any) -> float:
    """One run's wall time, from a clean heap."""
    gc.collect()
    return float(asyncio.run(coro_fn(*args)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--shapes", nargs="+", default=["wide", "deep", "random"])
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept (default 3)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()
    rows = []
    print(
        f"{'shape':<7}{'n':>7}  {'bare us':>8}  {'mdap us':>8}  {'+sqlite us':>10}  {'langgraph us':>12}  {'ratio':>6}"
    )
    print("         (overhead per subtask = (wall - bare) / n; ratio = langgraph overhead / mdap overhead)")
    for n in args.sizes:
        for shape in args.shapes:
            plan = make_plan(shape, n)
            best = {"bare": float("inf"), "mdap": float("inf"), "sqlite": float("inf"), "langgraph": float("inf")}
            for _ in range(args.repeat):  # interleaved, so every side sees the same machine load
                best["bare"] = min(best["bare"], timed(bare, plan))
                best["mdap"] = min(best["mdap"], timed(mdap_pipeline, plan, None))
                with tempfile.TemporaryDirectory() as tmp:
                    best["sqlite"] = min(best["sqlite"], timed(mdap_pipeline, plan, Path(tmp) / "bench.sqlite"))
                best["langgraph"] = min(best["langgraph"], timed(langgraph_run, shape, plan))
            b, m, sq, lg = best["bare"], best["mdap"], best["sqlite"], best["langgraph"]
            per = {k: (v - b) / n * 1e6 for k, v in (("mdap", m), ("sqlite", sq), ("langgraph", lg))}
            ratio = per["langgraph"] / max(per["mdap"], 1e-9)
            rows.append({"shape": shape, "n": n, "bare_us": b / n * 1e6, **{f"{k}_us": v for k, v in per.items()}})
            rows[-1]["ratio"] = ratio
            print(
                f"{shape:<7}{n:>7}  {b / n * 1e6:>8.1f}  {per['mdap']:>8.1f}  {per['sqlite']:>10.1f}  "
                f"{per['langgraph']:>12.1f}  {ratio:>5.1f}x",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
