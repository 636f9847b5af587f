"""StepHandler: what a worker does with one step request, without any Redis in sight (so it is testable).

``parse`` validates the wire message; ``run`` rebuilds the step kind's parser from the registry, rebuilds the
voter from its spec, and votes on the worker's model -- sampling and voting happen next to the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from mdap.errors import ConfigError, MdapError, VoteFailed
from mdap.models import ChatModel

from .kinds import KindRegistry, SimulatedSettings, StepKind
from .wire import StepRequest, StepResult

__all__ = ["StepHandler"]


class StepHandler:
    """Runs step requests on one model.

    Args:
        kinds: where step kinds are resolved.
        model: the model to sample from; None = each kind's simulated model built from ``simulated``.
        simulated: the simulated model's settings (used when ``model`` is None).
        worker_id: written into every result.

    Raises:
        ConfigError: neither a model nor simulated settings.
    """

    def __init__(
        self,
        kinds: KindRegistry,
        model: ChatModel | None = None,
        *,
        simulated: SimulatedSettings | None = None,
        worker_id: str = "",
    ) -> None:
        if model is None and simulated is None:
            raise ConfigError("a worker needs a model, or simulated settings to build each kind's simulated model")
        self.kinds = kinds
        self.model = model
        self.simulated = simulated
        self.worker_id = worker_id
        self._models: dict[str, ChatModel] = {}

    @staticmethod
    def parse(fields: Mapping[Any, Any]) -> StepRequest:
        """The step request in a stream entry's fields.

        Raises:
            ConfigError: no ``job`` field, or it is not a valid StepRequest (the message says what is wrong).
        """
        raw = fields.get(b"job", fields.get("job"))
        if raw is None:
            names = sorted(k.decode(errors="replace") if isinstance(k, bytes) else str(k) for k in fields)
            raise ConfigError(f"the entry has no 'job' field (fields: {names})")
        try:
            return StepRequest.model_validate_json(raw)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'job'}: {e['msg']}" for e in err.errors()[:5])
            raise ConfigError(f"the job is not a step request ({problems})") from None

    def model_for(self, request: StepRequest, kind: StepKind) -> ChatModel:
        """The model that samples steps of ``kind``."""
        if self.model is not None:
            return self.model
        key = f"{request.kind}:{json.dumps(request.params, sort_keys=True)}"
        model = self._models.get(key)
        if model is None:
            if kind.simulated is None:
                raise ConfigError(f"step kind {request.kind!r} has no simulated model; run the worker with --model")
            assert self.simulated is not None
            model = self._models[key] = kind.simulated(self.simulated)
        return model

    async def run(self, request: StepRequest) -> StepResult:
        """Vote on the step; a vote that reaches its sample cap is a ``vote_failed`` result, not an error.

        Raises:
            ConfigError: an unknown kind, bad parameters or a bad voter spec (retrying cannot help).
            Exception: whatever the model raises (e.g. ModelError); the worker retries the step.
        """
        kind = self.kinds.resolve(request.kind, request.params)
        if request.work is not None:
            return await self._work(request, kind)
        ms = kind.microstep
        if ms is None or request.voter is None:
            raise ConfigError(f"step kind {request.kind!r} has no microstep: it runs work items only")
        voter = request.voter.build()
        model = self.model_for(request, kind)
        try:
            decision = await voter.decide(model, request.messages, ms.parse)  # type: ignore[arg-type]
        except VoteFailed as err:
            return StepResult.vote_failed(request.id, err, self.worker_id)
        return StepResult.decided(request.id, decision, ms.dump_answer(decision.answer), self.worker_id)

    async def _work(self, request: StepRequest, kind: StepKind) -> StepResult:
        """Run a work item; its MdapError is its (final) failure, for the coordinator's own retry policy."""
        if kind.work is None or request.work is None:
            raise ConfigError(f"step kind {request.kind!r} runs no work items")
        try:
            output = await kind.work(request.work)
        except MdapError as err:
            error = f"{type(err).__name__}: {err}"
            return StepResult(id=request.id, status="failed", error=error, worker=self.worker_id)
        return StepResult(id=request.id, status="decided", answer=dict(output), worker=self.worker_id)
