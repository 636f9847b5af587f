"""The coordinator: runs a plan's subtasks as their dependencies finish, inside one LangGraph node.

LangGraph spends ~200 us per super-step or per ``Send`` (more as the fan-out grows), too much for plans of
thousands of subtasks. So the execute node hands the whole DAG to an :class:`Execution`: a fixed set of
``max_concurrency`` asyncio consumers takes ready subtasks from a deque, runs each on the subtask runner (with a
timeout, retries and exponential backoff), persists its result as it completes, and releases its
dependents. Per subtask this costs a little bookkeeping, whatever the DAG's shape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Mapping

from mdap.errors import ConfigError, MdapError, PlanError, VoteFailed
from mdap.planners import Expander, Plan, Subtask, Task
from mdap.usage import Usage

from ._deadlines import Deadlines
from ._store import Done, ResultStore, fingerprints
from .policy import CoordinatorPolicy
from .results import ExecOutcome, SubtaskResult
from .work import Artifact, RunScope, SubtaskRunner, WorkItem, WorkOutput

__all__ = ["CoordinatorPolicy", "ExecOutcome", "Execution", "SubtaskResult"]


class _Node:
    __slots__ = ("dependents", "depth", "fp", "parent", "sinks_left", "subtask", "waiting")

    def __init__(self, subtask: Subtask, fp: str, depth: int, parent: str | None) -> None:
        self.subtask = subtask
        self.fp = fp
        self.depth = depth
        self.parent = parent
        self.waiting = 0
        self.dependents: list[_Node] = []
        self.sinks_left = 0


class Execution:
    """One execute pass over a plan.

    Args:
        task: the task (for recursive planning).
        plan: a validated plan.
        runner: runs a work item (in process or on a pool).
        policy: concurrency, timeouts, retries, failure handling.
        store: where results are persisted as they complete (keyed by ``scope.thread``).
        scope: the run's own context: its id, thread and events (handed to the runner with each item).
        expander: plans too-big subtasks again (a RecursivePlanner), or None.
        roles: role name -> description, for the expander.
        stop_on_failure: stop starting subtasks at the first failure (to replan, or with on_failure='halt').
    """

    def __init__(
        self,
        *,
        task: Task,
        plan: Plan,
        runner: SubtaskRunner,
        policy: CoordinatorPolicy,
        store: ResultStore,
        scope: RunScope,
        expander: Expander | None = None,
        roles: Mapping[str, str] | None = None,
        stop_on_failure: bool = False,
    ) -> None:
        if len(plan.subtasks) > policy.max_pending:
            raise PlanError(
                f"the plan has {len(plan.subtasks)} subtasks, above max_pending={policy.max_pending}; "
                "raise the cap or plan coarser subtasks"
            )
        self.task = task
        self.runner = runner
        self.policy = policy
        self.store = store
        self.scope = scope
        self.thread = scope.thread
        self.events = scope.events
        self.expander = expander
        self.roles = dict(roles or {})
        self.stop_on_failure = stop_on_failure
        self.nodes: dict[str, _Node] = {}
        self.order: list[str] = []
        self.results: dict[str, SubtaskResult] = {}
        self._add(plan.subtasks, prefix="", depth=0, parent=None, outer_deps=None)
        self.failed: list[str] = []
        self.pending = len(self.nodes)
        self.running = 0
        self.stopping = False
        self._ready: deque[_Node] = deque()
        self._idle: list[asyncio.Future[None]] = []
        self._done = False
        self._stored: dict[str, Done] = {}
        self._deadlines: Deadlines | None = None

    def _add(
        self, subtasks: list[Subtask], *, prefix: str, depth: int, parent: _Node | None, outer_deps: list[str] | None
    ) -> list[_Node]:
        """Add subtasks (ids prefixed for a sub-plan, roots depending on ``outer_deps``); return those ready now."""
        fps = fingerprints(subtasks, parent.fp if parent else "")
        parent_id = parent.subtask.id if parent else None
        nodes = self.nodes
        results = self.results
        order = self.order
        ready = []
        for s in subtasks:
            if prefix:
                deps = [prefix + d for d in s.depends_on] if s.depends_on else list(outer_deps or [])
                node = _Node(
                    s.model_copy(update={"id": prefix + s.id, "depends_on": deps}), fps[s.id], depth, parent_id
                )
            else:
                node = _Node(s, fps[s.id], depth, parent_id)
            nodes[node.subtask.id] = node
            order.append(node.subtask.id)
        for s in subtasks:
            node = nodes[prefix + s.id]
            for d in node.subtask.depends_on:
                if d in results:
                    continue  # finished before this sub-plan was added (a split subtask's own dependencies)
                node.waiting += 1
                nodes[d].dependents.append(node)
            if node.waiting == 0:
                ready.append(node)
        return ready

    async def run(self) -> ExecOutcome:
        """Run every subtask; return when all finished or the pass stopped at a failure."""
        self._stored = self.store.load(self.thread)
        nodes = self.nodes
        self._ready.extend(nodes[sid] for sid in self.order if nodes[sid].waiting == 0)
        n = min(self.policy.max_concurrency, max(1, len(self.nodes)))
        timeout = self.policy.subtask_timeout_s
        self._deadlines = Deadlines(timeout) if timeout is not None else None
        try:
            await asyncio.gather(*(self._consume() for _ in range(n)))
        finally:
            self.store.flush()
            if self._deadlines is not None:
                await self._deadlines.close()
        not_run = [sid for sid in self.order if sid not in self.results]
        return ExecOutcome(self.results, self.failed, not_run)

    async def _consume(self) -> None:
        """Take ready subtasks until the pass is over.

        A consumer that takes a subtask while more are ready wakes one idle consumer, so a chain of subtasks
        runs on one consumer without a hand-off per subtask, and a fan-out spreads over all of them.
        """
        ready = self._ready
        idle = self._idle
        loop = asyncio.get_running_loop()
        while True:
            while not ready:
                if self._done:
                    return
                waiter: asyncio.Future[None] = loop.create_future()
                idle.append(waiter)
                await waiter
            node = ready.popleft()
            if ready and idle:
                idle.pop().set_result(None)
            if self.stopping:
                continue
            self.running += 1
            try:
                await self._run_node(node)
            finally:
                self.running -= 1
                if self.pending == 0 or (self.stopping and self.running == 0):
                    self._done = True
                    for w in idle:
                        if not w.done():
                            w.set_result(None)
                    idle.clear()

    async def _run_node(self, node: _Node) -> None:
        """Run one subtask on the runner, retrying failed attempts with backoff; or take it from the store."""
        if self._from_store(node):
            return
        s = node.subtask
        item = self._item(node)
        if self.events.active:
            self.events.emit("subtask_started", id=s.id, role=s.role)
        t0 = time.perf_counter()
        retries = self.policy.retries
        error = ""
        lost = Usage.zero()  # what failed votes of earlier attempts spent
        for attempt in range(1, retries + 2):
            item.attempt = attempt
            out = await self._attempt(item)
            if isinstance(out, WorkOutput):
                if out.too_big is not None and item.may_split:
                    await self._split(node)
                    return
                if out.answer is not None:
                    self._finish(node, _result(s, out, attempt, lost, time.perf_counter() - t0))
                    return
                error = "the worker answered too_big but the subtask cannot be split further"
            elif isinstance(out, VoteFailed):
                lost += out.usage
                error = f"VoteFailed: {out}"
            else:
                error = out
            if attempt <= retries:
                await self._back_off(s, attempt, error)
        seconds = time.perf_counter() - t0
        failed = SubtaskResult(s.id, s.role, "failed", error=error, attempts=retries + 1, usage=lost, seconds=seconds)
        self._finish(node, failed)

    def _from_store(self, node: _Node) -> bool:
        """Finish ``node`` from the store when an earlier session did it (or split it); whether it did."""
        done = self._stored.get(node.fp)
        if isinstance(done, Plan):
            self._expand(node, done, persist=False)
            return True
        if done is not None and done.ok:
            self._finish(node, dataclasses.replace(done, id=node.subtask.id, cached=True), persist=False)
            return True
        return False  # never ran, or failed (a failure is tried again)

    def _item(self, node: _Node) -> WorkItem:
        """The work item of ``node``: its instruction and its dependencies' results, cut to ``artifact_chars``."""
        s = node.subtask
        results = self.results
        chars = self.policy.artifact_chars
        artifacts = []
        for d in s.depends_on:
            r = results[d]
            text = (r.answer if r.ok else r.error) or ""
            artifacts.append(Artifact(d, r.ok, text if len(text) <= chars else text[:chars] + " ...[cut]"))
        may_split = self.expander is not None and node.depth < self.expander.max_depth
        return WorkItem(s.id, s.role, s.instruction, artifacts, may_split)

    async def _attempt(self, item: WorkItem) -> WorkOutput | VoteFailed | str:
        """One try of ``item`` on the runner under the subtask timeout: its output, or why it failed (a
        VoteFailed carries what its samples cost)."""
        deadlines = self._deadlines
        me = asyncio.current_task() if deadlines is not None else None
        expired = False
        try:
            if deadlines is None or me is None:
                return await self.runner(item, self.scope)
            deadlines.arm(me)
            try:
                return await self.runner(item, self.scope)
            finally:
                expired = deadlines.disarm(me)
        except asyncio.CancelledError:
            if not expired or (me is not None and me.cancelling()):
                raise  # the run itself is being cancelled
            return self._timed_out()
        except TimeoutError:
            return self._timed_out()
        except ConfigError:
            raise  # a wiring mistake (unknown role, bad tool): no retry can fix it
        except VoteFailed as err:
            return err
        except Exception as err:  # an MdapError, or a bug in a tool or a backend: this attempt's failure
            return f"{type(err).__name__}: {err}"

    def _timed_out(self) -> str:
        return f"timed out after {self.policy.subtask_timeout_s:g}s (raise subtask_timeout_s or split the subtask)"

    async def _back_off(self, s: Subtask, attempt: int, error: str) -> None:
        """Before retrying ``s``: say so, then wait the policy's exponential backoff."""
        policy = self.policy
        if self.events.active:
            self.events.emit("subtask_retried", id=s.id, attempt=attempt, error=error[:500])
        delay = min(policy.backoff_s * policy.backoff_factor ** (attempt - 1), policy.max_backoff_s)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _split(self, node: _Node) -> None:
        assert self.expander is not None
        s = node.subtask
        try:
            sub = await self.expander.expand(self.task, s, self.roles, node.depth)
        except MdapError as err:
            self._finish(node, SubtaskResult(s.id, s.role, "failed", error=f"could not split: {err}"))
            return
        self._expand(node, sub, persist=True)

    def _expand(self, node: _Node, sub: Plan, *, persist: bool) -> None:
        s = node.subtask
        # Count every subtask this pass created, not only the unfinished ones: a chain-shaped split keeps few
        # subtasks pending at a time, yet splitting each part again would create max_depth-fold more without end.
        total = len(self.nodes) + len(sub.subtasks)
        if total > self.policy.max_pending:
            error = (
                f"splitting {s.id} into {len(sub.subtasks)} subtasks would make {total} subtasks in this run "
                f"(splits included), above max_pending={self.policy.max_pending} (task explosion guard)"
            )
            self._finish(node, SubtaskResult(s.id, s.role, "failed", error=error))
            return
        if persist:
            self.store.put(self.thread, node.fp, sub)
        prefix = s.id + "/"
        ready = self._add(sub.subtasks, prefix=prefix, depth=node.depth + 1, parent=node, outer_deps=s.depends_on)
        node.sinks_left = len(sub.sinks())
        self.pending += len(sub.subtasks)
        if self.events.active:
            self.events.emit("subtask_expanded", id=s.id, children=[prefix + c.id for c in sub.subtasks])
        self._ready.extend(ready)

    def _finish(self, node: _Node, result: SubtaskResult, *, persist: bool = True) -> None:
        sid = node.subtask.id
        self.results[sid] = result
        self.pending -= 1
        if persist and (result.ok or result.children is None):  # a failed split keeps its sub-plan for a resume
            self.store.put(self.thread, node.fp, result)
        events = self.events
        if events.active:
            events.emit(
                "subtask_finished",
                id=sid,
                role=result.role,
                status=result.status,
                answer=(result.answer or "")[:200],
                error=result.error,
                samples=result.usage.samples,
                seconds=round(result.seconds, 6),
                cached=result.cached,
            )
        if not result.ok:
            self.failed.append(sid)
            if self.stop_on_failure:
                self.stopping = True
        if node.parent is not None:
            parent = self.nodes[node.parent]
            if not node.dependents and sid.startswith(parent.subtask.id + "/"):
                parent.sinks_left -= 1
                if parent.sinks_left == 0:
                    self._finish_split(parent)
        if self.stopping:
            return
        ready = self._ready
        for dep in node.dependents:
            dep.waiting -= 1
            if dep.waiting == 0:
                ready.append(dep)

    def _finish_split(self, parent: _Node) -> None:
        s = parent.subtask
        prefix = s.id + "/"
        kids = [sid for sid in self.order if sid.startswith(prefix) and self.nodes[sid].parent == s.id]
        sinks = [k for k in kids if not self.nodes[k].dependents]
        bad = [k for k in sinks if not self.results[k].ok]
        if bad:
            result = SubtaskResult(s.id, s.role, "failed", error="parts failed: " + ", ".join(bad), children=kids)
        else:
            parts = [self.results[k].answer or "" for k in sinks]
            lines = [f"[{k[len(prefix) :]}] {a}" for k, a in zip(sinks, parts, strict=True)]
            answer = parts[0] if len(parts) == 1 else "\n".join(lines)
            result = SubtaskResult(s.id, s.role, "ok", answer=answer, children=kids)
        self._finish(parent, result)


def _result(s: Subtask, out: WorkOutput, attempt: int, lost: Usage, seconds: float) -> SubtaskResult:
    return SubtaskResult(
        s.id,
        s.role,
        "ok",
        answer=out.answer,
        attempts=attempt,
        votes=out.votes,
        usage=lost + out.usage if lost else out.usage,
        tool_calls=out.tool_calls,
        seconds=seconds,
    )
