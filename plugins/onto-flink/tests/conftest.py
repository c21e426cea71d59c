"""Flink for the onto-flink tests: the job runner's environment, connector jars, a broker.

``flink_job_python`` makes (once; later runs reuse it) a venv under pytest's cache with
``uv venv`` and ``uv pip install plugins/onto-flink/job`` (PyFlink 2.3 and its
apache-beam pins, which cannot share the workspace environment with the Firestore
client). ``kafka_jars`` extracts the Kafka SQL connector and kafka-clients jars from the
``shigawire-apache-flink-libraries`` wheel (installed with ``--target``, never into the
job venv: its other jars are Flink 2.0's). The Kafka broker fixtures are onto-kafka's.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # flink_workload, for the tests

ROOT = Path(__file__).resolve().parents[3]
JOB_PACKAGE = ROOT / "plugins" / "onto-flink" / "job"
JARS_WHEEL = "shigawire-apache-flink-libraries==2.0.0.post1"
KAFKA_JARS = ("flink-connector-kafka.jar", "kafka-clients.jar")


def _kafka_conftest() -> object:
    """onto-kafka's test conftest: its broker fixtures and helpers, reused here."""
    path = ROOT / "plugins" / "onto-kafka" / "tests" / "conftest.py"
    spec = importlib.util.spec_from_file_location("onto_kafka_tests_conftest", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_kafka = _kafka_conftest()
kafka_bootstrap = _kafka.kafka_bootstrap  # type: ignore[attr-defined]
kafka = _kafka.kafka  # type: ignore[attr-defined]
wait_until = _kafka.wait_until  # type: ignore[attr-defined]
pytest_configure = _kafka.pytest_configure  # type: ignore[attr-defined]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv not found (UV unset, none on PATH): the Flink job venv is made with uv")
    return uv


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")


@pytest.fixture(scope="session")
def flink_job_python(request: pytest.FixtureRequest) -> str:
    """The Python of a venv holding onto-flink-job (PyFlink); made on first use."""
    if os.environ.get("ONTO_FLINK_PYTHON"):
        return os.environ["ONTO_FLINK_PYTHON"]
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Flink needs Java 17: no java on PATH")
    cache = Path(request.config.cache.mkdir("onto-flink-job"))
    venv = cache / "venv"
    python = venv / "bin" / "python"
    stamp = (JOB_PACKAGE / "pyproject.toml").read_text() + (
        JOB_PACKAGE / "onto_flink_job" / "__main__.py"
    ).read_text()
    ready = cache / "ready"
    with _locked(cache / "lock"):
        if not ready.exists() or ready.read_text() != stamp:
            uv = _uv()
            shutil.rmtree(venv, ignore_errors=True)
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            _run([uv, "venv", "--quiet", "--python", version, str(venv)])
            _run([uv, "pip", "install", "--quiet", "--python", str(python), str(JOB_PACKAGE)])
            ready.write_text(stamp)
    return str(python)


@pytest.fixture(scope="session")
def kafka_jars(request: pytest.FixtureRequest) -> str:
    """A folder holding the Kafka SQL connector and kafka-clients jars."""
    cache = Path(request.config.cache.mkdir("onto-flink-jars"))
    jars = cache / "kafka"
    with _locked(cache / "lock"):
        if not all((jars / j).exists() for j in KAFKA_JARS):
            target = cache / "wheel"
            shutil.rmtree(target, ignore_errors=True)
            _run([_uv(), "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                  "--python", sys.executable, JARS_WHEEL])  # fmt: skip
            jars.mkdir(exist_ok=True)
            for name in KAFKA_JARS:
                shutil.copy(target / "pyflink" / "lib" / name, jars / name)
    return str(jars)
