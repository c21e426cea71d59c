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

import itertools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from onto_core.errors import ConfigError, PluginError
from onto_core.plugins import (
    ComponentInfo,
    ComponentKind,
    closest_name,
    get_component,
    list_components,
)
from onto_core.protocols import Guarantee

__all__ = [
    "BatchPolicy",
    "ComponentSpec",
    "OntoConfig",
    "PipelineConfig",
    "RetryPolicy",
    "RuntimeSettings",
    "TracingSettings",
    "expand_env",
    "is_secret_key",
    "load_config",
    "parse_config",
    "redact",
]

KeyPath = tuple[str | int, ...]
T = TypeVar("T")

# A key is secret when one of its words (split at "_", "-", "." and camelCase) is one of these,
# or two neighbouring words form one ("api_key", "privateKey"). Words, not substrings, so
# "passthrough" or "max_tokens" stay visible.
SECRET_WORDS = frozenset(
    {
        "apikey",
        "authorization",
        "credential",
        "credentials",
        "passphrase",
        "passwd",
        "password",
        "pwd",
        "secret",
        "secrets",
        "token",
    }
)
# LeanCloud names its secrets app_key, master_key and hook_key.
SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("access", "key"),
        ("private", "key"),
        ("app", "key"),
        ("master", "key"),
        ("hook", "key"),
    }
)
URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(?=@)")
ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def expand_env(text: str) -> str:
    """``text`` with each ``${NAME}`` / ``${NAME:default}`` filled in from the environment
    and ``$${`` written as ``${``; ``LookupError(NAME)`` for a variable that is not set
    and has no default."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise LookupError(name)

    return ENV_REF.sub(replace, text)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryPolicy(_Strict):
    """How often and how patiently a failing step is retried before dead-lettering."""

    max_attempts: int = Field(
        5,
        ge=1,
        description=(
            "Tries of one message on its own at a failing stage, the first included;"
            " a failed batch call it was part of comes on top."
        ),
    )
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

    size: int = Field(
        100,
        ge=1,
        description=(
            "Most messages taken, processed and handed to a sink at once; with linger_ms"
            " 0 a batch is whatever is ready, so a lone message never waits."
        ),
    )
    linger_ms: float = Field(
        0, ge=0, description="How long to wait for a batch to fill before sending it anyway."
    )


class MetricsEndpoint(_Strict):
    """Where the runtime serves its Prometheus metrics itself (docs/observability.md)."""

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(9464, ge=0, le=65535, description="Port; 0 picks a free one.")


class TracingSettings(_Strict):
    """Where the runtime sends its OpenTelemetry traces (docs/observability.md#traces)."""

    exporter: Literal["otlp", "console", "file", "none"] = Field(
        "otlp",
        description=(
            "otlp: OTLP over HTTP to endpoint (needs onto-core[tracing-otlp]); console:"
            " each finished span on standard output; file: one JSON line per finished span"
            " at path; none: spans are made (and traceparent passed on) but not exported."
        ),
    )
    endpoint: str | None = Field(
        None,
        description=(
            "OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces; null takes"
            " OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, else"
            " http://localhost:4318/v1/traces."
        ),
    )
    path: str | None = Field(None, description="The JSON-lines file of the file exporter.")
    service_name: str = Field("onto", description="service.name of every span.")
    sample_ratio: float = Field(
        1.0,
        ge=0,
        le=1,
        description=(
            "Share of new traces recorded; a message that carries a traceparent follows"
            " its sampled flag."
        ),
    )

    @model_validator(mode="after")
    def _path_for_file(self) -> TracingSettings:
        if self.exporter == "file" and not self.path:
            raise ValueError("the file exporter needs 'path': the JSON-lines file to write")
        return self


class RuntimeSettings(_Strict):
    """Process-wide runtime settings."""

    drain_timeout: float = Field(
        10.0, gt=0, description="Seconds allowed for in-flight work after SIGINT/SIGTERM."
    )
    stats_interval: float = Field(
        0, ge=0, description="Seconds between metric log lines; 0 logs them only at exit."
    )
    gc_threshold: int | None = Field(
        10_000,
        ge=100,
        description=(
            "While the runtime runs, collect the garbage collector's youngest generation"
            " at most every this many allocations (Python's default is 700, which runs"
            " it every few hundred messages); null keeps the interpreter's setting."
        ),
    )
    freeze_gc: bool = Field(
        True,
        description=(
            "After start-up, and once what processors built at start (views and their"
            " indexes) is due out, move every object alive then out of the garbage"
            " collector's reach (gc.freeze), so collections scan only what pipelines"
            " allocate later; handed back (gc.unfreeze) when the runtime stops."
        ),
    )
    metrics: MetricsEndpoint | None = Field(
        None,
        description=(
            "Serve Prometheus metrics at http://host:port/metrics, e.g. {port: 9464};"
            " null serves them only at /metrics of a web server the config runs."
        ),
    )
    tracing: TracingSettings | None = Field(
        None,
        description=(
            "Record OpenTelemetry traces: a span per message per stage, e.g."
            " {exporter: otlp}; null (the default) records none."
        ),
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
    # Component blocks stay ``Any`` here: ``_component`` checks their shape and says which
    # kind of block was expected.
    source: Any = Field(description="The source block.")
    processors: list[Any] = Field(default_factory=list, description="In order.")
    sinks: list[Any] = Field(min_length=1, description="Every message goes to each.")
    guarantee: Guarantee = Field(Guarantee.AT_LEAST_ONCE, description="Delivery guarantee.")
    dead_letter: Any = Field(None, description="Sink for failed messages.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    batch: BatchPolicy = Field(default_factory=BatchPolicy)
    buffer: int = Field(1000, ge=1, description="Most messages held between source and sinks.")


class _RootShape(_Strict):
    datastore: Any = Field(None, description="The datastore block.")
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
        redacted: dict[str, Any] = redact(self.raw)
        return redacted


def is_secret_key(key: str) -> bool:
    """Whether a setting called ``key`` holds a secret: ``password``, ``api_key``, ``authToken``."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    parts = [w for w in re.split(r"[^a-z0-9]+", words) if w]
    return any(w in SECRET_WORDS for w in parts) or any(
        pair in SECRET_PAIRS for pair in itertools.pairwise(parts)
    )


def redact(value: Any, key: str = "") -> Any:
    """``value`` with secrets replaced by ``***``.

    A secret is the value of an entry whose key looks secret (see ``is_secret_key``), or the
    password in a URL such as ``postgres://user:secret@host/db``.
    """
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key and is_secret_key(key) and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return URL_PASSWORD.sub(r"\g<head>***", value)
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
        try:
            return expand_env(text)
        except LookupError as missing:
            name = missing.args[0]
            raise self.error(
                f"environment variable {name} is not set and has no default "
                f"(write ${{{name}:default}} to give one)",
                path,
            ) from None


_SCALARS = yaml.SafeLoader("")


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _explain_yaml_error(exc: yaml.MarkedYAMLError) -> tuple[str, int | None]:
    """PyYAML's complaint in words a config author can act on, and the line to blame."""
    problem = exc.problem or str(exc)
    context = exc.context or ""
    line = exc.problem_mark.line + 1 if exc.problem_mark else None
    opened = exc.context_mark.line + 1 if exc.context_mark else None
    if "'\\t'" in problem:
        column = exc.problem_mark.column + 1 if exc.problem_mark else "?"
        return f"tab character at column {column}; indent YAML with spaces", line
    if problem.startswith("expected <block end>") and opened is not None:
        return f"bad indentation; this line does not line up with the block on line {opened}", line
    if "flow" in context and opened is not None:
        bracket = "{" if "mapping" in context else "["
        return f"{problem} (is the {bracket!r} on line {opened} closed?)", line
    if "quoted scalar" in context and "end of stream" in problem:
        return "the quoted string that starts on this line is never closed", opened
    if problem == "mapping values are not allowed here":
        return f"{problem} (quote a value that contains ': ')", line
    if context and opened is not None and opened != line:
        problem += f" ({context} on line {opened})"
    return problem, line


def _parse_yaml(text: str, file: str) -> tuple[Any, _Loaded]:
    loaded = _Loaded(file)
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        message, line = _explain_yaml_error(exc)
        raise ConfigError(f"invalid YAML: {message}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    # A stray "---" makes an empty document; only documents with content count.
    nodes = [n for n in nodes if not (isinstance(n, yaml.ScalarNode) and n.value == "")]
    if len(nodes) > 1:
        raise ConfigError(
            "expected one YAML document, but a second one starts here "
            "(put every pipeline under one 'pipelines' key)",
            file=file,
            line=_document_start_line(text, nodes[1]),
        )
    if not nodes:
        raise ConfigError("the config is empty; expected a mapping with 'pipelines'", file=file)
    return loaded.build(nodes[0], ()), loaded


def _document_start_line(text: str, node: yaml.Node) -> int:
    """The line of the ``---`` that opens the document holding ``node``."""
    first = node.start_mark.line
    lines = text.splitlines()
    for index in range(min(first, len(lines) - 1), -1, -1):
        if re.match(r"---(\s|$)", lines[index]):
            return index + 1
    return first + 1


# --- validation -------------------------------------------------------------------------


class _Hidden:
    """Stands for a secret's value in error messages."""

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__


def _show(value: Any) -> str:
    """``value`` as a config author wrote it in YAML, for "got ..." in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "path_type": "a file path",
}


def _describe(error: Mapping[str, Any], secret: bool = False) -> str:
    """One pydantic error as a sentence fragment ending in what was found.

    ``secret``: the value is a secret's, so it is never shown, whatever its type.
    """
    if secret:
        raw = error.get("input")
        text = _describe({**error, "input": _Hidden()})
        return text.replace(str(raw), "***") if raw not in (None, "") else text
    kind: str = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    got = _show(error.get("input"))
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {got}"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']}, got {got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {got}"
    if kind == "less_than":
        return f"must be less than {ctx['lt']}, got {got}"
    if kind == "too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else str(error["msg"])
    if kind == "enum":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        message = f"expected one of: {', '.join(choices)}, got {got}"
        hint = closest_name(str(error.get("input")), choices)
        return message + (f" (did you mean {hint!r}?)" if hint else "")
    if kind in ("value_error", "assertion_error"):
        text = str(error["msg"])
        return text.split(", ", 1)[1] if text.startswith(("Value error, ", "Assertion")) else text
    return f"{error['msg']}, got {got}"


def _rank(problem: ConfigError) -> tuple[bool, int]:
    """Most telling first: a wrong or unknown key before a missing one (a misspelt key
    makes the right one go missing), then the one nearest the top of the file."""
    return problem.message == "required key is missing", problem.line or 0


def _combined(problems: list[ConfigError]) -> ConfigError:
    """One error for every problem found: the most telling, saying how many more there are."""
    ordered = sorted(problems, key=_rank)
    first = ordered[0]
    if len(ordered) == 1:
        return first
    more = len(ordered) - 1
    return ConfigError(
        f"{first.message} (and {more} more problem{'s' if more > 1 else ''})",
        file=first.file,
        line=first.line,
        path=first.path,
        problems=ordered,
    )


def _error_path(error: Any, prefix: KeyPath) -> KeyPath:
    # pydantic adds validator names such as "function-after[...]" to locations; not keys.
    return (*prefix, *(p for p in error["loc"] if not isinstance(p, str) or "[" not in p))


def _validation_problems(
    exc: ValidationError,
    loaded: _Loaded,
    prefix: KeyPath,
    allowed_keys: Callable[[KeyPath], list[str] | None],
) -> list[ConfigError]:
    """Every problem in ``exc``, each naming its line and key.

    ``allowed_keys(path)`` lists the keys valid next to an unknown key at ``path``. A key
    reported missing that an unknown key's "did you mean" names is the same mistake, and
    left out.
    """
    errors = exc.errors()
    hints: dict[int, tuple[list[str], str | None]] = {}
    meant: set[KeyPath] = set()
    for index, error in enumerate(errors):
        path = _error_path(error, prefix)
        allowed = allowed_keys(path) if error["type"] == "extra_forbidden" and path else None
        if allowed is not None:
            hint = closest_name(str(path[-1]), allowed)
            hints[index] = (allowed, hint)
            if hint:
                meant.add((*path[:-1], hint))
    problems: list[ConfigError] = []
    for index, error in enumerate(errors):
        path = _error_path(error, prefix)
        if error["type"] == "missing" and path in meant:
            continue
        secret = any(isinstance(part, str) and is_secret_key(part) for part in path)
        message = _describe(error, secret)
        if index in hints:
            allowed, hint = hints[index]
            message += f"; expected one of: {', '.join(allowed)}"
            if hint:
                message += f" (did you mean {hint!r}?)"
        problems.append(loaded.error(message, path))
    return problems


def _raise_validation(
    exc: ValidationError,
    loaded: _Loaded,
    prefix: KeyPath,
    allowed_keys: Callable[[KeyPath], list[str] | None],
) -> NoReturn:
    """Raise one ``ConfigError`` carrying every problem in ``exc`` (see ``_combined``)."""
    raise _combined(_validation_problems(exc, loaded, prefix, allowed_keys)) from None


def _allowed_keys(loc: KeyPath) -> list[str] | None:
    """Keys valid where an unknown key ``loc[-1]`` was found, for "expected one of" hints."""
    models: dict[str, type[BaseModel]] = {"retry": RetryPolicy, "batch": BatchPolicy}
    model: type[BaseModel] | None = None
    if len(loc) == 1:
        model = _RootShape
    elif loc[0] == "runtime" and len(loc) == 2:
        model = RuntimeSettings
    elif loc[0] == "pipelines" and len(loc) == 3:
        model = _PipelineShape
    elif loc[0] == "pipelines" and len(loc) == 4:
        model = models.get(str(loc[2]))
    return sorted(model.model_fields) if model is not None else None


def _component(kind: ComponentKind, block: Any, loaded: _Loaded, path: KeyPath) -> ComponentSpec:
    if not isinstance(block, Mapping):
        message = f"expected a {kind} block like {{type: <name>, ...}}, got {_show(block)}"
        if isinstance(block, str):
            message += f" (did you mean {{type: {block}}}?)"
        raise loaded.error(message, path)
    type_name = block.get("type")
    if type_name is None:
        known = ", ".join(c.name for c in list_components(kind)) or "none"
        raise loaded.error(f"the {kind} block has no 'type'; known {kind} types: {known}", path)
    if not isinstance(type_name, str):
        raise loaded.error(f"'type' must be a {kind} name, got {_show(type_name)}", (*path, "type"))
    try:
        info = get_component(kind, type_name)
        model = info.config_model
    except PluginError as exc:
        raise loaded.error(exc.message, (*path, "type")) from None
    settings = {k: v for k, v in block.items() if k != "type"}
    for name, field_info in model.model_fields.items():
        # A setting that is itself a component block (``json_schema_extra={"component":
        # kind}``) is checked as one, so its errors name their own keys and lines.
        extra = field_info.json_schema_extra
        nested = extra.get("component") if isinstance(extra, dict) else None
        if isinstance(nested, str) and settings.get(name) is not None:
            settings[name] = _component(nested, settings[name], loaded, (*path, name))  # type: ignore[arg-type]
    try:
        config = model.model_validate(settings)
    except ValidationError as exc:
        _raise_validation(exc, loaded, path, lambda _: sorted(["type", *model.model_fields]))
    return ComponentSpec(
        kind=kind,
        type=type_name,
        info=info,
        config=config,
        path=_dotted(path),
        line=loaded.line_of(path),
        raw=dict(block),
    )


def _offered(spec: ComponentSpec) -> list[Guarantee]:
    """The guarantees ``spec``'s component can give, weakest first."""
    offered = frozenset(getattr(spec.info.cls, "guarantees", ()))
    return [g for g in Guarantee if g in offered]


def _check_guarantee(pipeline: PipelineConfig, loaded: _Loaded, path: KeyPath) -> None:
    wanted = pipeline.guarantee
    parts = (pipeline.source, *pipeline.sinks)
    short = [spec for spec in parts if wanted not in _offered(spec)]
    if not short:
        return
    reasons = [
        f"{spec.kind} {spec.type!r} supports "
        + (f"only {', '.join(g.value for g in _offered(spec))}" if _offered(spec) else "none")
        for spec in short
    ]
    common = [g.value for g in Guarantee if all(g in _offered(spec) for spec in parts)]
    hint = f" (choose {' or '.join(common)})" if common else ""
    raise loaded.error(
        f"guarantee {wanted.value} cannot be given: {'; '.join(reasons)}{hint}",
        (*path, "guarantee"),
    )


def _check_pipeline_hooks(pipeline: PipelineConfig, loaded: _Loaded, base: KeyPath) -> None:
    """Let each component refuse the pipeline around it (``check_pipeline(pipeline)``).

    A component class may define ``check_pipeline(pipeline: PipelineConfig)`` (a classmethod
    or staticmethod) raising ``ValueError`` when it cannot work in ``pipeline``, e.g. a
    source whose ``exactly_once`` needs one particular sink. The error names the component
    and its line.
    """
    placed: list[tuple[ComponentSpec, KeyPath]] = [
        (pipeline.source, (*base, "source")),
        *((spec, (*base, "processors", i)) for i, spec in enumerate(pipeline.processors)),
        *((spec, (*base, "sinks", i)) for i, spec in enumerate(pipeline.sinks)),
    ]
    for spec, path in placed:
        check = getattr(spec.info.cls, "check_pipeline", None)
        if check is None:
            continue
        try:
            check(pipeline)
        except ValueError as exc:
            raise loaded.error(f"{spec.kind} {spec.type!r}: {exc}", path) from None


def _root_shape(data: dict[str, Any], loaded: _Loaded) -> _RootShape:
    """onto's own keys checked (component blocks are checked by ``_component``)."""
    try:
        return _RootShape.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, loaded, (), _allowed_keys)


class _Problems:
    """The problems found so far in one file, so that one block's mistake hides no other's."""

    def __init__(self) -> None:
        self.found: list[ConfigError] = []

    def check(self, check: Callable[[], T]) -> T | None:
        """``check()``, or ``None`` with its problems noted when it raised ``ConfigError``."""
        try:
            return check()
        except ConfigError as exc:
            self.found.extend(exc.problems)
            return None

    def raise_any(self) -> None:
        if self.found:
            raise _combined(self.found)


def parse_config(text: str, file: str = "<config>") -> OntoConfig:
    """Validate config ``text``; ``file`` names it in errors. Raises ``ConfigError``.

    Every block is checked even when another has problems: the error raised is the most
    telling problem, and its ``problems`` are all of them.
    """
    data, loaded = _parse_yaml(text, file)
    if not isinstance(data, dict):
        raise loaded.error(
            f"expected a mapping with 'pipelines' at the top level, got {_show(data)}", ()
        )
    problems = _Problems()
    shape = problems.check(lambda: _root_shape(data, loaded))
    datastore = (
        problems.check(lambda: _component("datastore", data["datastore"], loaded, ("datastore",)))
        if data.get("datastore") is not None
        else None
    )
    written = data.get("pipelines")
    pipelines: dict[str, PipelineConfig] = {}
    for name, raw in written.items() if isinstance(written, dict) else ():
        pipeline = _pipeline(name, raw, shape, loaded, problems)
        if pipeline is not None:
            pipelines[name] = pipeline
    problems.raise_any()
    assert shape is not None  # a shape problem was raised above
    return OntoConfig(
        file=file, datastore=datastore, pipelines=pipelines, runtime=shape.runtime, raw=data
    )


def _pipeline(
    name: str, raw: Any, shape: _RootShape | None, loaded: _Loaded, problems: _Problems
) -> PipelineConfig | None:
    """Pipeline ``name`` validated, its problems noted; ``None`` when it has any."""
    if not isinstance(raw, Mapping):
        return None  # the shape check reported it
    base: KeyPath = ("pipelines", name)
    before = len(problems.found)

    def block(kind: ComponentKind, value: Any, path: KeyPath) -> ComponentSpec | None:
        return problems.check(lambda: _component(kind, value, loaded, path))

    source = block("source", raw["source"], (*base, "source")) if "source" in raw else None
    written_processors = raw.get("processors")
    processors = [
        block("processor", item, (*base, "processors", i))
        for i, item in enumerate(written_processors if isinstance(written_processors, list) else [])
    ]
    written_sinks = raw.get("sinks")
    sinks = [
        block("sink", item, (*base, "sinks", i))
        for i, item in enumerate(written_sinks if isinstance(written_sinks, list) else [])
    ]
    dead_letter = (
        block("sink", raw["dead_letter"], (*base, "dead_letter"))
        if raw.get("dead_letter") is not None
        else None
    )
    p = shape.pipelines.get(name) if shape is not None else None
    if p is None or source is None or len(problems.found) > before:
        return None
    built = [spec for spec in processors if spec is not None]
    pipeline = PipelineConfig(
        name=name,
        source=source,
        processors=built,
        sinks=[spec for spec in sinks if spec is not None],
        guarantee=p.guarantee,
        dead_letter=dead_letter,
        retry=p.retry,
        batch=_preferred_batch(p.batch, built, p.buffer),
        buffer=p.buffer,
    )
    problems.check(lambda: _check_guarantee(pipeline, loaded, base))
    problems.check(lambda: _check_pipeline_hooks(pipeline, loaded, base))
    if pipeline.batch.size > pipeline.buffer:
        problems.found.append(
            loaded.error(
                f"batch.size ({pipeline.batch.size}) cannot exceed buffer ({pipeline.buffer})",
                (*base, "batch", "size"),
            )
        )
    return pipeline if len(problems.found) == before else None


def _preferred_batch(
    batch: BatchPolicy, processors: list[ComponentSpec], buffer: int
) -> BatchPolicy:
    """``batch``, its size raised to the largest ``preferred_batch_size`` of the pipeline's
    processors (at most ``buffer``) when the config sets no size of its own."""
    if "size" in batch.model_fields_set:
        return batch
    preferred = max((getattr(s.info.cls, "preferred_batch_size", 0) for s in processors), default=0)
    size = min(preferred, buffer)
    return batch.model_copy(update={"size": size}) if size > batch.size else batch


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
