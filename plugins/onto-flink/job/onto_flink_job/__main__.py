"""Runs a compiled onto view job on Flink: executed by the job environment's Python.

This module imports only PyFlink and the standard library, because it runs in the
environment that holds PyFlink (``onto-flink[job]``), which need not hold onto. It reads
one JSON job description (``python -m onto_flink_job JOB.json``):

- ``settings``: Flink configuration (parallelism, checkpointing, mini-batch, ...);
- ``jars``: connector jars for ``pipeline.jars``;
- ``setup``: statements run first (tables and views);
- ``inserts``: the INSERTs, submitted as one statement set;
- ``collect`` (instead of ``inserts``): ``{"queries": [...], "path": FILE}``: the queries'
  rows are written to FILE as JSON lines ``{"key", "value"}``, in changelog order,
  leaving out retractions (a bounded run, for tests and benchmarks);
- ``detach``: return once the job is submitted (a remote cluster) instead of waiting.

It prints one JSON line ``{"job_id": ...}`` once the job is submitted, and with ``collect``
``{"rows": N}`` at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main(path: str) -> int:
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    job: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    config = Configuration()
    for key, value in job.get("settings", {}).items():
        config.set_string(key, str(value))
    if job.get("jars"):
        config.set_string("pipeline.jars", ";".join(f"file://{j}" for j in job["jars"]))
    settings = (
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    )
    tables = TableEnvironment.create(settings)
    for statement in job["setup"]:
        tables.execute_sql(statement)
    collect = job.get("collect")
    if collect:
        queries = collect["queries"]
        union = queries[0] if len(queries) == 1 else " UNION ALL ".join(f"({q})" for q in queries)
        result = tables.execute_sql(union)
        client = result.get_job_client()
        print(json.dumps({"job_id": str(client.get_job_id()) if client else None}), flush=True)
        rows = 0
        with Path(collect["path"]).open("w", encoding="utf-8") as out, result.collect() as it:
            for row in it:
                kind = str(row.get_row_kind())
                if kind in ("+I", "+U", "INSERT", "UPDATE_AFTER"):
                    out.write(json.dumps({"key": row[0], "value": json.loads(row[1])}) + "\n")
                    rows += 1
        print(json.dumps({"rows": rows}), flush=True)
        return 0
    statements = tables.create_statement_set()
    for insert in job["inserts"]:
        statements.add_insert_sql(insert)
    result = statements.execute()
    client = result.get_job_client()
    job_id = str(client.get_job_id()) if client is not None else None
    print(json.dumps({"job_id": job_id}), flush=True)
    if not job.get("detach"):
        result.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
