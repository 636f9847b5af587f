"""OpenTelemetry spans of pipeline runs and chains: run -> subtask -> vote -> sample (the ``otel`` extra).

The spans are made from what mdap already reports: the run's events (:mod:`mdap.agents.events`) open and close
the run and subtask spans, and a vote observer (:mod:`mdap.voters.observe`) hands over each vote's samples,
which become a vote span with one ``chat`` span per sample (GenAI semantic conventions: ``gen_ai.*``), timed by
the samples' own latency. OpenTelemetry is imported only when a tracer is made, so mdap runs without it.

    from opentelemetry.sdk.trace import TracerProvider
    from mdap.agents.telemetry import instrument

    instrument(pipeline, tracer_provider=TracerProvider())   # a Pipeline or a CompiledPipeline
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mdap.errors import ConfigError
from mdap.voters.observe import VoteRecord, observing, set_observer

from ._detail import shown_answer
from .events import Event, EventBus

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = ["INSTALL_HINT", "PipelineTracer", "instrument", "otlp_provider", "trace_chain", "tracer_of"]

INSTALL_HINT = "OpenTelemetry is not installed: pip install 'mdap[otel]'"
_SCOPE = "mdap"
_ANSWER_CHARS = 500


def tracer_of(tracer_provider: Any = None) -> Tracer:
    """mdap's tracer from ``tracer_provider`` (default: the global one).

    Raises:
        ConfigError: OpenTelemetry is not installed (with the install hint).
    """
    try:
        from opentelemetry import trace
    except ImportError as err:
        raise ConfigError(INSTALL_HINT) from err
    return trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)


def otlp_provider(endpoint: str, *, service: str = "mdap") -> Any:
    """A TracerProvider exporting over OTLP/HTTP to ``endpoint`` (a collector's base URL: spans go to
    ``<endpoint>/v1/traces``, or to ``endpoint`` itself when it already ends so) in batches; call its
    ``shutdown()`` at the end to flush.

    Raises:
        ConfigError: OpenTelemetry or its OTLP exporter is not installed.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as err:
        raise ConfigError(INSTALL_HINT) from err
    url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return provider


class PipelineTracer:
    """An event listener and vote observer that turns a pipeline's runs into spans.

    Spans (parent first): ``mdap.run {thread}`` (opened by the run's first event, closed by ``run_finished``)
    -> ``mdap.subtask {id}`` (``subtask_started`` .. ``subtask_finished``) -> ``mdap.vote`` (one per vote) ->
    ``chat {model}`` (one per sample). Events without a span of their own (plan, approval, retries, red flags,
    replans) are span events of the run or subtask span.

    Args:
        tracer: an OpenTelemetry tracer (see :func:`tracer_of`).
        workers: gives each role's worker (read when a subtask starts), whose model names the
            ``gen_ai.request.model`` of its samples.
    """

    def __init__(self, tracer: Tracer, workers: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.tracer = tracer
        self.workers = workers
        self._runs: dict[str, Span] = {}
        self._subtasks: dict[tuple[str, str], Span] = {}

    def __call__(self, event: Event) -> None:
        """Open, annotate or close the spans ``event`` concerns."""
        run = self._run(event)
        kind, data = event.kind, event.data
        if kind == "subtask_started":
            self._subtask_started(run, event)
        elif kind == "subtask_finished":
            self._subtask_finished(event)
        elif kind == "run_finished":
            self._run_finished(run, event)
        else:
            span = self._subtasks.get((event.thread, str(data.get("id", "")))) or run
            span.add_event(kind, _event_attributes(data), _ns(event.time))

    def _run(self, event: Event) -> Span:
        span = self._runs.get(event.thread)
        if span is None:
            span = self.tracer.start_span(
                f"mdap.run {event.thread}",
                start_time=_ns(event.time),
                attributes={"mdap.thread_id": event.thread, "gen_ai.operation.name": "invoke_agent"},
            )
            self._runs[event.thread] = span
        if event.kind == "plan_created":
            span.set_attribute("mdap.plan.subtasks", int(event.data.get("subtasks", 0)))
        return span

    def _subtask_started(self, run: Span, event: Event) -> None:
        from opentelemetry import trace

        sid, role = str(event.data.get("id", "")), str(event.data.get("role", ""))
        span = self.tracer.start_span(
            f"mdap.subtask {sid}",
            context=trace.set_span_in_context(run),
            start_time=_ns(event.time),
            attributes={"mdap.subtask.id": sid, "mdap.subtask.role": role, "mdap.thread_id": event.thread},
        )
        self._subtasks[(event.thread, sid)] = span
        # the coordinator emits this event in the task that then runs the subtask: its votes are this span's
        worker = self.workers().get(role) if self.workers is not None else None
        set_observer(_VoteSpans(self.tracer, span, getattr(worker, "model", None)))

    def _subtask_finished(self, event: Event) -> None:
        from opentelemetry.trace import Status, StatusCode

        data = event.data
        span = self._subtasks.pop((event.thread, str(data.get("id", ""))), None)
        if span is None:  # taken from the store: it never started in this session
            return
        attributes = {k: v for k, v in _event_attributes(data).items() if k not in ("id", "role")}
        span.set_attributes({f"mdap.{k}": v for k, v in attributes.items()})
        if data.get("status") not in (None, "ok"):
            span.set_status(Status(StatusCode.ERROR, str(data.get("error") or data.get("status"))))
        span.end(_ns(event.time))

    def _run_finished(self, run: Span, event: Event) -> None:
        from opentelemetry.trace import Status, StatusCode

        data = event.data
        run.set_attribute("mdap.status", str(data.get("status")))
        if data.get("answer"):
            run.set_attribute("mdap.answer", str(data["answer"])[:_ANSWER_CHARS])
        if data.get("status") == "failed":
            run.set_status(Status(StatusCode.ERROR, str(data.get("error") or "failed")))
        for key in [k for k in self._subtasks if k[0] == event.thread]:
            self._subtasks.pop(key).end(_ns(event.time))
        self._runs.pop(event.thread, None)
        run.end(_ns(event.time))


def instrument(pipeline: Any, tracer_provider: Any = None) -> PipelineTracer:
    """Trace every run of ``pipeline`` (a :class:`~mdap.agents.Pipeline` or its compiled form) with spans.

    Args:
        pipeline: the pipeline; its listeners hear every run.
        tracer_provider: an OpenTelemetry TracerProvider (default: the global one).

    Returns:
        The listener (already attached).

    Raises:
        ConfigError: OpenTelemetry is not installed.
    """
    tracer = tracer_of(tracer_provider)
    bus = getattr(pipeline, "events", None)
    if isinstance(bus, EventBus):  # compiled: its workers are known now
        listener = PipelineTracer(tracer, lambda: pipeline.workers)
        bus.on("*", listener)
    else:  # a builder: its workers once it has compiled (a run compiles it first)
        listener = PipelineTracer(tracer, lambda: pipeline.compile().workers)
        pipeline.on("*", listener)
    return listener


@contextmanager
def trace_chain(name: str, tracer_provider: Any = None, *, model: Any = None, **attributes: Any) -> Iterator[Span]:
    """A span ``mdap.run {name}`` around a chain (an :class:`~mdap.executor.Executor` run), whose votes
    become its ``mdap.vote`` children with their ``chat`` samples.

    Raises:
        ConfigError: OpenTelemetry is not installed.
    """
    tracer = tracer_of(tracer_provider)
    attrs = {"gen_ai.operation.name": "invoke_agent", **{f"mdap.{k}": v for k, v in attributes.items()}}
    with tracer.start_as_current_span(f"mdap.run {name}", attributes=attrs) as span:
        observer = _VoteSpans(tracer, span, model)
        with observing(observer):
            yield span


class _VoteSpans:
    """A vote observer that makes the ``mdap.vote`` span of each vote under ``parent`` and its samples' spans."""

    __slots__ = ("model", "parent", "tracer")

    def __init__(self, tracer: Tracer, parent: Span, model: Any) -> None:
        self.tracer = tracer
        self.parent = parent
        self.model = model

    def vote(self, record: VoteRecord) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        attributes: dict[str, Any] = {
            "mdap.samples": len(record.samples),
            "mdap.votes": record.votes,
            "mdap.red_flags": sum(record.red_flags.values()),
        }
        if record.k is not None:
            attributes["mdap.k"] = record.k
        if record.answer is not None:
            attributes["mdap.decided_answer"] = (shown_answer(record.answer) or "")[:_ANSWER_CHARS]
        for kind, count in record.red_flags.items():
            attributes[f"mdap.red_flags.{kind}"] = count
        parent = trace.set_span_in_context(self.parent)
        vote = self.tracer.start_span("mdap.vote", context=parent, start_time=record.start_ns, attributes=attributes)
        if record.failed is not None:
            vote.set_status(Status(StatusCode.ERROR, record.failed))
        inside = trace.set_span_in_context(vote)
        name, provider = _model_name(self.model), _provider(self.model)
        for i, rec in enumerate(record.samples):
            s = rec.sample
            end = min(record.end_ns, max(record.start_ns, record.start_ns + int(s.latency_s * 1e9)))
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": provider,
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": s.adapter or name,
                "gen_ai.request.temperature": s.temperature,
                "gen_ai.usage.input_tokens": s.prompt_tokens,
                "gen_ai.usage.output_tokens": s.completion_tokens,
                "gen_ai.response.finish_reasons": [s.finish_reason],
                "mdap.sample.index": i,
                "mdap.sample.vote": rec.answer is not None,
            }
            if rec.flag is not None:
                attrs["mdap.red_flag"] = rec.flag
            span = self.tracer.start_span(
                f"chat {s.adapter or name}", context=inside, start_time=record.start_ns, attributes=attrs
            )
            span.end(end)
        vote.end(record.end_ns or time.time_ns())


def _model_name(model: Any) -> str:
    """The served model's name where the backend knows it, else the backend's class name."""
    if isinstance(model, str):  # a model spec (the CLI's --model)
        return model
    for _ in range(4):  # through wrappers (a Meter, request options) to the backend
        name = getattr(model, "model", None)
        if isinstance(name, str):
            return name
        if name is None:
            break
        model = name
    return type(model).__name__ if model is not None else "unknown"


def _provider(model: Any) -> str:
    """``gen_ai.provider.name``: "openai" for OpenAI-compatible servers, else "mdap" (mdap's own backends)."""
    while getattr(model, "model", None) is not None and not isinstance(model.model, str):
        model = model.model
    return "openai" if "openai" in type(model).__name__.lower() or "vllm" in type(model).__name__.lower() else "mdap"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:_ANSWER_CHARS]


def _event_attributes(data: Mapping[str, Any]) -> dict[str, Any]:
    """An event's data as span attributes: scalars and lists of scalars as they are, anything else as text."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, bool | int | float | str):
            out[key] = value[:_ANSWER_CHARS] if isinstance(value, str) else value
        elif isinstance(value, list) and all(isinstance(v, bool | int | float | str) for v in value):
            out[key] = value
        elif isinstance(value, Mapping) and all(isinstance(v, int | float) for v in value.values()):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        elif value is not None and key != "plan":
            out[key] = _text(value)
    return out


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)
