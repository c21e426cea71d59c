"""The ``flink:`` config file, the job it describes, and running that job on Flink.

PyFlink is not imported here: the job runs in the Python of an environment that holds
the runner (``onto-flink-job``, with PyFlink), found as ``--python``,
``ONTO_FLINK_PYTHON``, or this interpreter when it has the runner.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onto_core.builtin.view import load_view
from onto_core.config import expand_env
from onto_core.errors import ConfigError
from onto_flink._compile import FlinkJob, compile_views

__all__ = [
    "FlinkConfig",
    "JobRun",
    "job_python",
    "load_flink_config",
    "submitted_jobs",
]

RUNNER_MODULE = "onto_flink_job"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Endpoint(_Strict):
    """Where changes come from or view updates go: a Kafka topic, or a file (tests)."""

    bootstrap_servers: str | None = Field(None, description="Kafka brokers, 'host:port,...'.")
    topic: str | None = Field(None, description="The topic.")
    group_id: str = Field("onto-flink", description="Consumer group of the change source.")
    path: str | None = Field(
        None, description="A JSON-lines file instead of a topic (bounded; tests, benchmarks)."
    )
    properties: dict[str, str] = Field(
        default_factory=dict, description="Further Kafka client properties."
    )


class FlinkConfig(_Strict):
    """The ``flink:`` block of a config file."""

    views: list[str] = Field(description="View models to run, 'package.module:Class'.")
    changes: Endpoint = Field(description="onto's change topic (kafka_publish.yaml writes it).")
    sink: Endpoint = Field(description="Upsert topic of view updates, keyed by view key.")
    parallelism: int = Field(1, ge=1, description="Parallelism of every operator.")
    checkpoint_interval_ms: int = Field(5000, ge=100, description="Checkpoint period.")
    checkpoint_dir: str = Field(".onto/flink-checkpoints", description="Checkpoint storage.")
    mini_batch_latency_ms: int = Field(
        200, ge=0, description="Mini-batch: updates of one key within this time fold into one."
    )
    transactional_id_prefix: str = Field(
        "onto-flink", description="Prefix of the exactly-once Kafka sink's transactional ids."
    )
    options: dict[str, str] = Field(
        default_factory=dict, description="Further Flink settings, passed as they are."
    )


def _substitute(value: Any, file: str, path: str) -> Any:
    """``value`` (at key ``path``) with ``${ENV:default}`` filled in everywhere."""
    if isinstance(value, str):
        try:
            return expand_env(value)
        except LookupError as missing:
            raise ConfigError(
                f"environment variable {missing.args[0]} is not set and has no default",
                file=file,
                path=path,
            ) from None
    if isinstance(value, dict):
        return {k: _substitute(v, file, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, file, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def load_flink_config(path: str | Path) -> FlinkConfig:
    """The ``flink:`` block of ``path``, ``${ENV:default}`` filled in; ``ConfigError`` names
    the file and key of a mistake."""
    file = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(exc), file=file) from None
    if not isinstance(data, dict) or "flink" not in data:
        raise ConfigError("no 'flink:' block", file=file)
    try:
        return FlinkConfig.model_validate(_substitute(data["flink"], file, "flink"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("flink", *first["loc"]))
        raise ConfigError(first["msg"], file=file, path=where) from None


def _source_options(config: FlinkConfig) -> dict[str, str]:
    changes = config.changes
    if changes.path:
        return {"connector": "filesystem", "path": changes.path, "format": "json"}
    if not changes.topic or not changes.bootstrap_servers:
        raise ConfigError("give topic and bootstrap_servers, or path", path="flink.changes")
    options = {
        "connector": "kafka",
        "topic": changes.topic,
        "properties.bootstrap.servers": changes.bootstrap_servers,
        "properties.group.id": changes.group_id,
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": "earliest-offset",
        "format": "json",
    }
    options.update({f"properties.{k}": v for k, v in changes.properties.items()})
    return options


def _sink_options(config: FlinkConfig) -> dict[str, str]:
    sink = config.sink
    if sink.path:
        # A file sink cannot take updates: the runner collects the rows instead.
        return {"connector": "blackhole"}
    if not sink.topic or not sink.bootstrap_servers:
        raise ConfigError("give topic and bootstrap_servers, or path", path="flink.sink")
    options = {
        "connector": "upsert-kafka",
        "topic": sink.topic,
        "properties.bootstrap.servers": sink.bootstrap_servers,
        "key.format": "raw",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": "exactly-once",
        "sink.transactional-id-prefix": config.transactional_id_prefix,
        "properties.transaction.timeout.ms": "600000",
    }
    options.update({f"properties.{k}": v for k, v in sink.properties.items()})
    return options


def compile_config(config: FlinkConfig) -> FlinkJob:
    """The Flink SQL job of ``config``."""
    views = [load_view(ref) for ref in config.views]
    return compile_views(views, _source_options(config), _sink_options(config))


def flink_settings(config: FlinkConfig) -> dict[str, str]:
    """The Flink configuration the job runs with."""
    checkpoints = Path(config.checkpoint_dir).resolve()
    settings = {
        "parallelism.default": str(config.parallelism),
        "pipeline.name": "onto views: " + ", ".join(v.rpartition(":")[2] for v in config.views),
        "execution.checkpointing.interval": f"{config.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoints.as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "table.exec.sink.upsert-materialize": "NONE",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "3",
        "restart-strategy.fixed-delay.delay": "2 s",
        # The rising-versions step runs in Python workers, which take records in bundles:
        # a bundle goes out when full or after this many ms (Flink's default, 1,000 ms,
        # would hold each update up to a second).
        "python.fn-execution.bundle.time": "20",
    }
    if config.mini_batch_latency_ms:
        settings.update(
            {
                "table.exec.mini-batch.enabled": "true",
                "table.exec.mini-batch.allow-latency": f"{config.mini_batch_latency_ms} ms",
                "table.exec.mini-batch.size": "10000",
            }
        )
    settings.update(config.options)
    return settings


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest completed checkpoint (``chk-N`` holding ``_metadata``) under ``directory``."""
    found = [
        (p.stat().st_mtime, p)
        for p in Path(directory).glob("*/chk-*")
        if (p / "_metadata").exists()
    ]
    return max(found)[1] if found else None


def job_python(explicit: str | None = None) -> str:
    """The Python that runs jobs: ``explicit``, ``ONTO_FLINK_PYTHON``, or this one if it has
    PyFlink; ``ConfigError`` saying how to get one otherwise."""
    chosen = explicit or os.environ.get("ONTO_FLINK_PYTHON")
    if chosen:
        return chosen
    if importlib.util.find_spec(RUNNER_MODULE) is not None:
        return sys.executable
    raise ConfigError(
        "the Flink job runner is not installed in this environment: install onto-flink-job "
        "(plugins/onto-flink/job, with PyFlink) in an environment of its own, whose "
        "apache-beam pins protobuf<6, and point ONTO_FLINK_PYTHON (or --python) at its python"
    )


def jars_from(value: str | None) -> list[str]:
    """Connector jars: ``value`` or ``ONTO_FLINK_JARS``, files or folders, comma-separated."""
    raw = value if value is not None else os.environ.get("ONTO_FLINK_JARS", "")
    jars: list[str] = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        path = Path(part).resolve()
        jars += sorted(str(j) for j in path.glob("*.jar")) if path.is_dir() else [str(path)]
    return jars


class JobRun:
    """One run of a job by the runner, in a process of its own."""

    def __init__(self, process: subprocess.Popen[str], job_file: Path) -> None:
        self.process = process
        self.job_file = job_file
        self.job_id: str | None = None

    def wait_submitted(self, timeout: float = 180) -> str | None:
        """Block until the runner says the job is submitted; its Flink job id."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the Flink job runner exited ({self.process.wait()})")
            if line.startswith("{"):
                self.job_id = json.loads(line).get("job_id")
                self.job_file.unlink(missing_ok=True)  # read by the runner before submitting
                return self.job_id
        raise TimeoutError(f"the Flink job was not submitted within {timeout}s")


def start_job(
    config: FlinkConfig,
    *,
    python: str | None = None,
    jars: str | None = None,
    jobmanager: str | None = None,
    from_checkpoint: str | None = None,
    log: Path | None = None,
) -> JobRun:
    """Start the runner for ``config`` (a local mini-cluster, or ``jobmanager`` HOST:PORT)."""
    job = compile_config(config)
    settings = flink_settings(config)
    if from_checkpoint:
        found = (
            latest_checkpoint(config.checkpoint_dir)
            if from_checkpoint == "latest"
            else Path(from_checkpoint)
        )
        if found is None:
            raise ConfigError(f"no completed checkpoint under {config.checkpoint_dir}")
        settings["execution.state-recovery.path"] = Path(found).resolve().as_uri()
    description: dict[str, Any] = {
        "settings": settings,
        "jars": jars_from(jars),
        "setup": job.setup,
        "rows": job.rows,
    }
    if config.sink.path:
        description["collect"] = {"path": str(Path(config.sink.path))}
    else:
        description["sink"] = job.sink
    if jobmanager:
        host, _, port = jobmanager.rpartition(":")
        settings.update({"execution.target": "remote", "rest.address": host, "rest.port": port})
        description["detach"] = True
    handle, name = tempfile.mkstemp(prefix="onto-flink-job-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(description, out)
    environment = dict(os.environ)
    environment.pop("VIRTUAL_ENV", None)
    environment["PYTHONUNBUFFERED"] = "1"
    if shutil.which("java") is None and not environment.get("JAVA_HOME"):
        raise ConfigError("Flink needs Java 17: no java on PATH and JAVA_HOME is not set")
    errors = log.open("a", encoding="utf-8") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        [job_python(python), "-m", RUNNER_MODULE, name],
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        env=environment,
        start_new_session=True,
    )
    return JobRun(process, Path(name))


def jobs_file() -> Path:
    """Where ``onto flink run`` notes what it submitted (``ONTO_FLINK_JOBS`` moves it)."""
    return Path(os.environ.get("ONTO_FLINK_JOBS", ".onto/flink-jobs.jsonl"))


def note_submitted(entry: dict[str, Any]) -> None:
    path = jobs_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")


def submitted_jobs() -> list[dict[str, Any]]:
    """What ``onto flink run`` submitted from here, oldest first."""
    path = jobs_file()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
