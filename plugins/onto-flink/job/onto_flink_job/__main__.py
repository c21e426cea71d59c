"""Runs a compiled onto view job on Flink: executed by the job environment's Python.

This module imports only PyFlink and the standard library, because it runs in the
environment that holds PyFlink (``onto-flink-job``), which need not hold onto. It reads
one JSON job description (``python -m onto_flink_job JOB.json``):

- ``settings``: Flink configuration (parallelism, checkpointing, mini-batch, ...);
- ``jars``: connector jars for ``pipeline.jars``;
- ``setup``: statements run first (tables and views);
- ``rows``: the view of every view key's rows (``key``, ``version``, ``head``, ``tail``);
- ``sink``: the upsert table (``key``, ``value``) the view updates are written to; or
- ``collect`` (instead of ``sink``): ``{"path": FILE}``: the updates are written to FILE
  as JSON lines ``{"key", "value"}``, in the order they come (a bounded run, for tests
  and benchmarks);
- ``detach``: return once the job is submitted (a remote cluster) instead of waiting.

Between the rows and the sink, one step keyed by view key makes each key's versions rise
(``RisingVersions``). It prints one JSON line ``{"job_id": ...}`` once the job is
submitted, and with ``collect`` ``{"rows": N}`` at the end.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyflink.common import Configuration, Row, Types
from pyflink.common.types import RowKind
from pyflink.datastream import KeyedProcessFunction, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.state import ValueState, ValueStateDescriptor
from pyflink.table import EnvironmentSettings, StreamTableEnvironment, Table

UPDATE = Types.ROW_NAMED(["key", "value"], [Types.STRING(), Types.STRING()])


class RisingVersions(KeyedProcessFunction):  # type: ignore[misc]
    """Per view key: each update's version is above the key's previous one.

    A row's version is the newest change its view was computed from. Flink's joins do not
    keep their inputs in step, so a row computed before a change reached every input can
    come after one computed with it, with a lower version; a sink keeping the newest
    version would then drop the later, truer row. A row whose version is not above the
    key's last gets the last plus 1. The last version is keyed state, so it is
    checkpointed and restored with the job. Retractions (``-U``, ``-D``) are dropped:
    the sink is an upsert table, and every key's newest row is its view.
    """

    def open(self, runtime_context: RuntimeContext) -> None:
        self.last: ValueState = runtime_context.get_state(
            ValueStateDescriptor("last_version", Types.LONG())
        )

    def process_element(self, row: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Row]:
        if row.get_row_kind() not in (RowKind.INSERT, RowKind.UPDATE_AFTER):
            return
        key, version, head, tail = row[0], row[1], row[2], row[3]
        last = self.last.value()
        if last is not None and version <= last:
            version = last + 1
        self.last.update(version)
        yield Row(key, f"{head}{version}{tail}")


def rising(tables: StreamTableEnvironment, rows: str) -> Table:
    """The updates of view ``rows``, each key's versions rising."""
    changes = tables.to_changelog_stream(tables.from_path(rows))
    updates = (
        changes.key_by(lambda row: row[0], key_type=Types.STRING())
        .process(RisingVersions(), output_type=UPDATE)
        .uid("onto-rising-versions")
        .name("rising versions")
    )
    return tables.from_data_stream(updates)


def main(path: str) -> int:
    job: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    config = Configuration()
    # The rising-versions step runs in Python workers: this interpreter, unless the
    # settings name another (a remote cluster's).
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    for key, value in job.get("settings", {}).items():
        config.set_string(key, str(value))
    if job.get("jars"):
        config.set_string("pipeline.jars", ";".join(f"file://{j}" for j in job["jars"]))
    env = StreamExecutionEnvironment.get_execution_environment(config)
    settings = (
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    )
    tables = StreamTableEnvironment.create(env, environment_settings=settings)
    for statement in job["setup"]:
        tables.execute_sql(statement)
    updates = rising(tables, job["rows"])
    collect = job.get("collect")
    if collect:
        result = updates.execute()
        client = result.get_job_client()
        print(json.dumps({"job_id": str(client.get_job_id()) if client else None}), flush=True)
        count = 0
        with Path(collect["path"]).open("w", encoding="utf-8") as out, result.collect() as it:
            for row in it:
                out.write(json.dumps({"key": row[0], "value": json.loads(row[1])}) + "\n")
                count += 1
        print(json.dumps({"rows": count}), flush=True)
        return 0
    statements = tables.create_statement_set()
    statements.add_insert(job["sink"], updates)
    result = statements.execute()
    client = result.get_job_client()
    job_id = str(client.get_job_id()) if client is not None else None
    print(json.dumps({"job_id": job_id}), flush=True)
    if not job.get("detach"):
        result.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
