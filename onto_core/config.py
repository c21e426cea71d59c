"""Pipeline config: YAML → validated models.

A config names a datastore and any number of pipelines, each a source, processors, sinks,
a delivery guarantee, a dead-letter sink and a retry policy. Every component block is
``{type: <name>, ...settings}`` and its settings are validated against the component's
own nested ``Config`` model. ``${VAR}`` and ``${VAR:default}`` in any string are replaced
from the environment (``$${`` writes a literal ``${``).

Every problem is raised as a ``ConfigError`` naming the file, line and key path, and what
was expected there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onto_core.errors import ConfigError, PluginError
from onto_core.plugins import ComponentInfo, ComponentKind, closest_name, get_component
from onto_core.protocols import Guarantee

__all__ = [
    "BatchPolicy",
    "ComponentSpec",
    "OntoConfig",
    "PipelineConfig",
    "RetryPolicy",
    "RuntimeSettings",
    "load_config",
    "parse_config",
    "redact",
]

KeyPath = tuple[str | int, ...]

SECRET_KEY = re.compile(r"pass(word)?|secret|token|api_?key|credential|private_?key", re.I)
ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryPolicy(_Strict):
    """How often and how patiently a failing step is retried before dead-lettering."""

    max_attempts: int = Field(5, ge=1, description="Attempts per message, the first included.")
    initial_backoff: float = Field(
        0.05, ge=0, description="Seconds to wait before the first retry."
    )
    max_backoff: float = Field(5.0, ge=0, description="Upper bound of one wait, in seconds.")
    multiplier: float = Field(2.0, ge=1, description="Factor applied to the wait per attempt.")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1)))


class BatchPolicy(_Strict):
    """How messages are grouped on their way to the sinks."""

    size: int = Field(1, ge=1, description="Most messages handed to a sink in one write.")
    linger_ms: float = Field(
        0, ge=0, description="How long to wait for a batch to fill before sending it anyway."
    )


class RuntimeSettings(_Strict):
    """Process-wide runtime settings."""

    drain_timeout: float = Field(
        10.0, gt=0, description="Seconds allowed for in-flight work after SIGINT/SIGTERM."
    )
    stats_interval: float = Field(
        0, ge=0, description="Seconds between metric log lines; 0 logs them only at exit."
    )


@dataclass(frozen=True)
class ComponentSpec:
    """A validated component block: which class, its parsed settings and where it was written."""

    kind: ComponentKind
    type: str
    info: ComponentInfo
    config: BaseModel
    path: str
    line: int | None
    raw: Mapping[str, Any] = field(repr=False)

    def build(self) -> Any:
        """A new instance of the component (nothing connects until ``start``)."""
        return self.info.cls(self.config)


class _PipelineShape(_Strict):
    source: dict[str, Any] = Field(description="The source block.")
    processors: list[dict[str, Any]] = Field(default_factory=list, description="In order.")
    sinks: list[dict[str, Any]] = Field(min_length=1, description="Every message goes to each.")
    guarantee: Guarantee = Field(Guarantee.AT_LEAST_ONCE, description="Delivery guarantee.")
    dead_letter: dict[str, Any] | None = Field(None, description="Sink for failed messages.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    batch: BatchPolicy = Field(default_factory=BatchPolicy)
    buffer: int = Field(1000, ge=1, description="Most messages held between source and sinks.")


class _RootShape(_Strict):
    datastore: dict[str, Any] | None = Field(None, description="The datastore block.")
    pipelines: dict[str, _PipelineShape] = Field(min_length=1)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)


@dataclass(frozen=True)
class PipelineConfig:
    """One validated pipeline."""

    name: str
    source: ComponentSpec
    processors: list[ComponentSpec]
    sinks: list[ComponentSpec]
    guarantee: Guarantee
    dead_letter: ComponentSpec | None
    retry: RetryPolicy
    batch: BatchPolicy
    buffer: int


@dataclass(frozen=True)
class OntoConfig:
    """A whole validated config file."""

    file: str
    datastore: ComponentSpec | None
    pipelines: dict[str, PipelineConfig]
    runtime: RuntimeSettings
    raw: dict[str, Any] = field(repr=False)

    def redacted(self) -> dict[str, Any]:
        """The config as written, env references resolved, secrets replaced by ``***``."""
        return redact(self.raw)


def redact(value: Any, key: str = "") -> Any:
    """``value`` with every entry whose key looks secret replaced by ``***``."""
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key and SECRET_KEY.search(key) and value not in (None, ""):
        return "***"
    return value


# --- YAML with line numbers -------------------------------------------------------------


class _Loaded:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {}

    def line_of(self, path: KeyPath) -> int | None:
        """Line of the deepest part of ``path`` that exists in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def error(self, message: str, path: KeyPath) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line_of(path), path=_dotted(path))

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, (*path, "<key>"))
                if not isinstance(key, str | int | float | bool) or key is None:
                    raise self.error("mapping keys must be plain scalars", path)
                key = str(key)
                if key == "<<":
                    raise self.error("YAML merge keys (<<) are not supported", path)
                if key in result:
                    first = self.lines.get((*path, key))
                    raise ConfigError(
                        f"duplicate key {key!r} (first defined on line {first})",
                        file=self.file,
                        line=key_node.start_mark.line + 1,
                        path=_dotted((*path, key)),
                    )
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, (*path, key))
            self.lines.pop((*path, "<key>"), None)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        value = _SCALARS.construct_object(node)
        return self.substitute(value, path) if isinstance(value, str) else value

    def substitute(self, text: str, path: KeyPath) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise self.error(
                f"environment variable {name} is not set and has no default "
                f"(write ${{{name}:default}} to give one)",
                path,
            )

        return ENV_REF.sub(replace, text)


_SCALARS = yaml.SafeLoader("")


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _parse_yaml(text: str, file: str) -> tuple[Any, _Loaded]:
    loaded = _Loaded(file)
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        raise ConfigError(
            f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    if len(nodes) > 1:
        line = nodes[1].start_mark.line + 1
        raise ConfigError("expected one YAML document, found several", file=file, line=line)
    if not nodes or nodes[0] is None:
        raise ConfigError("the config is empty; expected a mapping with 'pipelines'", file=file)
    return loaded.build(nodes[0], ()), loaded


# --- validation -------------------------------------------------------------------------


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    return str(error["msg"])


def _raise_validation(
    exc: ValidationError, loaded: _Loaded, prefix: KeyPath, allowed: list[str] | None = None
) -> None:
    errors = exc.errors()
    first = errors[0]
    path = (*prefix, *(p for p in first["loc"] if not isinstance(p, str) or "[" not in p))
    message = _describe(first)
    if first["type"] == "extra_forbidden" and allowed is not None and path:
        hint = closest_name(str(path[-1]), allowed)
        message += f"; expected one of: {', '.join(allowed)}"
        if hint:
            message += f" (did you mean {hint!r}?)"
    elif first["type"] not in ("missing", "extra_forbidden"):
        got = first.get("input")
        if not isinstance(got, dict | list):
            message += f", got {got!r}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    raise loaded.error(message, path) from None


def _allowed_keys(loc: tuple[Any, ...]) -> list[str] | None:
    """Keys valid where an unknown key ``loc[-1]`` was found, for "expected one of" hints."""
    model: type[BaseModel] | None = None
    if len(loc) == 1:
        model = _RootShape
    elif loc[0] == "runtime" and len(loc) == 2:
        model = RuntimeSettings
    elif loc[0] == "pipelines" and len(loc) == 3:
        model = _PipelineShape
    elif loc[0] == "pipelines" and len(loc) == 4:
        model = {"retry": RetryPolicy, "batch": BatchPolicy}.get(str(loc[2]))
    return sorted(model.model_fields) if model is not None else None


def _component(
    kind: ComponentKind, block: Any, loaded: _Loaded, path: KeyPath
) -> ComponentSpec:
    if not isinstance(block, Mapping):
        raise loaded.error(f"expected a {kind} block like {{type: <name>, ...}}", path)
    type_name = block.get("type")
    if type_name is None:
        raise loaded.error(f"the {kind} block has no 'type'", path)
    if not isinstance(type_name, str):
        raise loaded.error(f"'type' must be a {kind} name, got {type_name!r}", (*path, "type"))
    try:
        info = get_component(kind, type_name)
    except PluginError as exc:
        raise loaded.error(exc.message, (*path, "type")) from None
    settings = {k: v for k, v in block.items() if k != "type"}
    model = info.config_model
    try:
        config = model.model_validate(settings)
    except ValidationError as exc:
        _raise_validation(exc, loaded, path, sorted(["type", *model.model_fields]))
        raise  # unreachable: _raise_validation always raises
    return ComponentSpec(
        kind=kind,
        type=type_name,
        info=info,
        config=config,
        path=_dotted(path),
        line=loaded.line_of(path),
        raw=dict(block),
    )


def _check_guarantee(pipeline: PipelineConfig, loaded: _Loaded, path: KeyPath) -> None:
    wanted = pipeline.guarantee
    for spec in (pipeline.source, *pipeline.sinks):
        offered = getattr(spec.info.cls, "guarantees", frozenset())
        if wanted not in offered:
            can = ", ".join(sorted(str(g) for g in offered)) or "nothing"
            raise loaded.error(
                f"guarantee {wanted.value} cannot be given by {spec.kind} {spec.type!r} "
                f"(it supports: {can})",
                (*path, "guarantee"),
            )


def parse_config(text: str, file: str = "<config>") -> OntoConfig:
    """Validate config ``text``; ``file`` names it in errors. Raises ``ConfigError``."""
    data, loaded = _parse_yaml(text, file)
    if not isinstance(data, dict):
        raise loaded.error("expected a mapping with 'pipelines' at the top level", ())
    try:
        shape = _RootShape.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, loaded, (), _allowed_keys(tuple(exc.errors()[0]["loc"])))
        raise
    datastore = (
        _component("datastore", shape.datastore, loaded, ("datastore",))
        if shape.datastore is not None
        else None
    )
    pipelines: dict[str, PipelineConfig] = {}
    for name, p in shape.pipelines.items():
        base: KeyPath = ("pipelines", name)
        pipeline = PipelineConfig(
            name=name,
            source=_component("source", p.source, loaded, (*base, "source")),
            processors=[
                _component("processor", block, loaded, (*base, "processors", i))
                for i, block in enumerate(p.processors)
            ],
            sinks=[
                _component("sink", block, loaded, (*base, "sinks", i))
                for i, block in enumerate(p.sinks)
            ],
            guarantee=p.guarantee,
            dead_letter=(
                _component("sink", p.dead_letter, loaded, (*base, "dead_letter"))
                if p.dead_letter is not None
                else None
            ),
            retry=p.retry,
            batch=p.batch,
            buffer=p.buffer,
        )
        _check_guarantee(pipeline, loaded, base)
        if pipeline.batch.size > pipeline.buffer:
            raise loaded.error(
                f"batch.size ({pipeline.batch.size}) cannot exceed buffer ({pipeline.buffer})",
                (*base, "batch", "size"),
            )
        pipelines[name] = pipeline
    return OntoConfig(
        file=file, datastore=datastore, pipelines=pipelines, runtime=shape.runtime, raw=data
    )


def load_config(path: str | os.PathLike[str]) -> OntoConfig:
    """Read and validate the config file at ``path``. Raises ``ConfigError``."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", file=file) from None
    return parse_config(text, file)
