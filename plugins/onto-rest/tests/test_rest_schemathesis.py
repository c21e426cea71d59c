"""Schemathesis generates requests from the served /openapi.json: none gets a server error,
and every answer is one the document describes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    CheckFunction,
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow
ServeRest = Callable[..., contextlib.AbstractContextManager[str]]


def fuzz(url: str, mode: GenerationMode, checks: list[CheckFunction]) -> dict[str, str]:
    """Run ~25 generated requests per operation of ``url``'s document; failures by operation.

    schemathesis' lazy pytest loader does not run under pytest 9, so each operation's
    strategy is driven by hypothesis directly.
    """
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 8  # 2 lists, 2 reads, 1 PATCH and 3 actions
    failures: dict[str, str] = {}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=checks, timeout=15)

        try:
            call()
        except Unsatisfiable:
            pass  # nothing to make invalid: a read's only inputs are its path segments
        except Exception as exc:  # collect every operation's failure, not only the first
            failures[operation.label] = str(exc)
    return failures


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_never_get_a_server_error(
    serve_rest: ServeRest, mode: GenerationMode
) -> None:
    with serve_rest(timeout=10) as url:
        failures = fuzz(url, mode, [not_a_server_error])
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_every_answer_is_one_the_document_describes(serve_rest: ServeRest) -> None:
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    with serve_rest(timeout=10) as url:
        failures = fuzz(url, GenerationMode.POSITIVE, checks)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_schemathesis_cli_finds_no_failure_in_any_phase(
    serve_rest: ServeRest, tmp_path: Path
) -> None:
    """The CLI as a user runs it: every check, coverage (negative and undeclared methods,
    OPTIONS ``Allow``), fuzzing and stateful phases, a bounded number of examples."""
    # A schema-valid action its domain rules refuse (closed -> closed) is 422: a schema
    # cannot state those rules, so 422 joins what schema-valid data may get back.
    (tmp_path / "schemathesis.toml").write_text(
        "[checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]\n'
    )
    with serve_rest(timeout=10) as url:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{url}/openapi.json",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                "15",
                "--generation-deterministic",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Stateful" in done.stdout
    assert "Coverage" in done.stdout
