"""The public API is exactly what we document, and `import mdap` stays light."""

from __future__ import annotations

import subprocess
import sys

import mdap

# The documented public API of `mdap` (README "Concepts"); a change here is a change of the API.
PUBLIC_API = [
    "Adapter",
    "Chain",
    "ChatModel",
    "CheckpointError",
    "ConfigError",
    "CoordinatorPolicy",
    "Decision",
    "Executor",
    "FirstToAheadByK",
    "LLMPlanner",
    "LocalModel",
    "Majority",
    "MdapError",
    "Message",
    "Microstep",
    "ModelError",
    "OpenAICompatible",
    "Pipeline",
    "Plan",
    "PlanError",
    "PoolError",
    "RecursivePlanner",
    "RedFlag",
    "RedFlagPolicy",
    "RunReport",
    "RunResult",
    "Sample",
    "SimulatedModel",
    "StaticPlanner",
    "Subtask",
    "Task",
    "Tool",
    "VLLMServer",
    "Verifier",
    "VoteFailed",
    "Voter",
    "WorkerRole",
]


def test_all_is_exactly_the_documented_api() -> None:
    assert mdap.__all__ == sorted(mdap.__all__), "keep __all__ sorted"
    assert sorted(mdap.__all__) == sorted(PUBLIC_API)
    for name in mdap.__all__:
        assert getattr(mdap, name) is not None


def test_every_error_derives_from_mdap_error() -> None:
    errors = [getattr(mdap, n) for n in mdap.__all__ if n.endswith(("Error", "Failed", "Flag"))]
    assert len(errors) == 8
    assert all(issubclass(e, mdap.MdapError) for e in errors)


HEAVY = ("vllm", "torch", "transformers", "peft", "matplotlib", "langgraph", "redis", "openai")

_PROBE = f"""
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {("vllm", "torch", "transformers", "peft", "matplotlib")!r}:
            raise ImportError(f"{{name}} is not installed (blocked by the test)")
        return None

sys.meta_path.insert(0, Block())
import asyncio
import mdap
from mdap.evals.hanoi import hanoi_chain, simulated_hanoi_model
report = asyncio.run(mdap.Executor(simulated_hanoi_model(), mdap.FirstToAheadByK(k=2)).run(hanoi_chain(4)))
assert report.ok, report
loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(",".join(loaded))
"""


def test_import_mdap_needs_no_extras_and_loads_nothing_heavy() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import mdap loaded heavy modules: {out.stdout.strip()}"
