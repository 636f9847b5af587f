"""Pipelines from a config file (JSON, TOML, or YAML when PyYAML is installed), for ``mdap run --roles``.

    {
      "roles": [
        {"name": "researcher", "description": "finds facts", "tools": ["python", "files"],
         "voter": {"kind": "first_to_ahead_by_k", "k": 2}},
        {"name": "writer", "description": "writes the answer", "voter": {"kind": "majority", "n": 3}}
      ],
      "planner": {"max_attempts": 3},
      "policy": {"max_concurrency": 8, "retries": 2},
      "workspace": "work",
      "price": {"input_per_m": 0.15, "output_per_m": 0.6}
    }

``price`` is the model's price per million tokens (every role and the planner share the pipeline's model; a
role's adapter is served by the same model, at its price), so reports show costs; ``--price-in``/``--price-out``
win over it. ``roles`` may also be a table keyed by role name. Tools are built-in groups: ``python``, ``shell``,
``files``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdap.errors import ConfigError
from mdap.jsontext import loads_json
from mdap.models import ChatModel, Price
from mdap.planners import LLMPlanner, RecursivePlanner
from mdap.voters import VoterSpec

from .coordinator import CoordinatorPolicy
from .pipeline import Pipeline
from .roles import WorkerRole
from .tools import Limits, Tool, Workspace, file_tools, python_tool, shell_tool

__all__ = ["PipelineConfig", "PlannerConfig", "RoleConfig", "load_config"]

TOOL_GROUPS = ("python", "shell", "files")


class RoleConfig(BaseModel):
    """One worker role."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    tools: list[str] = Field(default_factory=list, description="built-in tool groups: python, shell, files")
    voter: VoterSpec = Field(default_factory=lambda: VoterSpec(), description="the voter (see mdap.voters.VoterSpec)")
    system_prompt: str = ""
    adapter: str | None = None
    max_tool_rounds: Annotated[int, Field(ge=0)] = 6

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: list[str]) -> list[str]:
        bad = [t for t in tools if t not in TOOL_GROUPS]
        if bad:
            raise ValueError(f"unknown tools {bad}; use any of {list(TOOL_GROUPS)}")
        return tools


class PlannerConfig(BaseModel):
    """The LLM planner's settings."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: Annotated[int, Field(ge=1)] = 3
    max_depth: Annotated[int, Field(ge=0, description="> 0: split too-big subtasks again, this many levels deep")] = 0
    temperature: Annotated[float, Field(ge=0)] = 0.0
    adapter: str | None = None


class PipelineConfig(BaseModel):
    """A whole pipeline: roles, planner, coordinator policy, tool workspace and limits."""

    model_config = ConfigDict(extra="forbid")

    name: str = "pipeline"
    roles: list[RoleConfig] = Field(min_length=1)
    planner: PlannerConfig = Field(default_factory=lambda: PlannerConfig())
    policy: dict[str, Any] = Field(default_factory=dict, description="CoordinatorPolicy fields")
    workspace: Annotated[str, Field(description="directory the tools work in")] = "workspace"
    tool_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    price: Price | None = Field(default=None, description="the model's price per million tokens (None: no price set)")

    @field_validator("roles", mode="before")
    @classmethod
    def _table(cls, roles: Any) -> Any:
        if isinstance(roles, dict):
            return [{"name": name, **(fields or {})} for name, fields in roles.items()]
        return roles

    def build(self, model: ChatModel, *, base: Path | None = None) -> Pipeline:
        """The pipeline, every role and the planner on ``model``; the workspace is relative to ``base``.

        Raises:
            ConfigError: an invalid policy field.
        """
        try:
            policy = CoordinatorPolicy.model_validate(self.policy)
        except ValidationError as err:
            raise ConfigError(f"policy: {err}") from None
        root = Path(self.workspace)
        if base is not None and not root.is_absolute():
            root = base / root
        limits = Limits(timeout_s=self.tool_timeout_s)
        workspace: Workspace | None = None
        pipeline = Pipeline(self.name, model=model).policy(policy)
        for r in self.roles:
            tools: list[Tool] = []
            if r.tools and workspace is None:
                workspace = Workspace(root)
            for group in r.tools:
                assert workspace is not None
                if group == "python":
                    tools.append(python_tool(workspace, limits))
                elif group == "shell":
                    tools.append(shell_tool(workspace, limits))
                else:
                    tools.extend(file_tools(workspace))
            pipeline.role(
                WorkerRole(
                    r.name,
                    description=r.description,
                    adapter=r.adapter,
                    tools=tools,
                    voter=r.voter.build(adapter=r.adapter),
                    system_prompt=r.system_prompt,
                    max_tool_rounds=r.max_tool_rounds,
                )
            )
        p = self.planner
        llm = LLMPlanner(model, max_attempts=p.max_attempts, temperature=p.temperature, adapter=p.adapter)
        pipeline.planner(RecursivePlanner(llm, max_depth=p.max_depth) if p.max_depth else llm)
        return pipeline


def load_config(path: str | Path) -> PipelineConfig:
    """Read a pipeline config file: ``.json``, ``.toml``, or ``.yaml``/``.yml`` (needs PyYAML).

    Raises:
        ConfigError: missing file, unknown extension, unparseable, or invalid fields (named).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"roles file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"roles file {p} cannot be read as UTF-8 text: {err}") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            data = loads_json(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise ConfigError(
                    f"{p} is YAML but PyYAML is not installed: pip install pyyaml, or use JSON/TOML"
                ) from None
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise ConfigError(f"roles file {p} is not valid YAML: {err}") from None
        else:
            raise ConfigError(f"roles file {p}: use .json, .toml or .yaml, not {suffix or 'no extension'}")
    except ConfigError:
        raise
    except (ValueError, tomllib.TOMLDecodeError, RecursionError) as err:
        raise ConfigError(f"roles file {p} is not valid {suffix[1:].upper()}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"roles file {p} must hold a table/object with a 'roles' entry")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in err.errors()[:5])
        raise ConfigError(f"roles file {p}: {problems}") from None
