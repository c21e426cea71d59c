"""``onto flink``: compile declared views to Flink SQL, run them, list what was submitted."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import click

__all__ = ["flink"]


@click.group(invoke_without_command=True)
@click.pass_context
def flink(ctx: click.Context) -> None:
    """Views on Apache Flink; without a subcommand, list the jobs submitted from here."""
    if ctx.invoked_subcommand is not None:
        return
    from onto_flink._job import submitted_jobs

    jobs = submitted_jobs()
    if not jobs:
        click.echo("no Flink job submitted from here")
        return
    rows = [("job id", "where", "status", "submitted", "config")]
    for job in jobs:
        rows.append(
            (
                job.get("job_id") or "-",
                job.get("jobmanager") or f"local (pid {job.get('pid')})",
                _status(job),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.get("submitted", 0))),
                job.get("config", "-"),
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _status(job: dict[str, object]) -> str:
    """RUNNING / FINISHED / ... as the JobManager reports it; a local job: whether it runs."""
    manager = job.get("jobmanager")
    if manager:
        try:
            url = f"http://{manager}/jobs/{job.get('job_id')}"
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(json.load(response).get("state", "?"))
        except OSError:
            return "unreachable"
    pid = job.get("pid")
    try:
        os.kill(int(str(pid)), 0)
    except (OSError, ValueError):
        return "ended"
    return "running"


@flink.command("compile")
@click.argument("config", type=click.Path(dir_okay=False))
def compile_command(config: str) -> None:
    """Print the Flink SQL job of CONFIG's views."""
    from onto_flink._job import compile_config, load_flink_config

    click.echo(compile_config(load_flink_config(config)).script(), nl=False)


@flink.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--jobmanager", help="Submit to this cluster, HOST:PORT of its REST endpoint.")
@click.option("--python", "python", help="Python of the environment holding PyFlink.")
@click.option("--jars", help="Connector jars (files or folders, comma-separated).")
@click.option(
    "--from-checkpoint", help="Resume from this checkpoint, or 'latest' under checkpoint_dir."
)
@click.option(
    "--log",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the job runner's (PyFlink's and Flink's) output to this file.",
)
def run_command(
    config: str,
    jobmanager: str | None,
    python: str | None,
    jars: str | None,
    from_checkpoint: str | None,
    log: Path | None,
) -> None:
    """Run CONFIG's views: on a local mini-cluster until Ctrl-C, or submitted to a cluster."""
    from onto_flink._job import load_flink_config, note_submitted, start_job

    loaded = load_flink_config(config)
    run = start_job(
        loaded,
        python=python,
        jars=jars,
        jobmanager=jobmanager,
        from_checkpoint=from_checkpoint,
        log=log,
    )
    job_id = run.wait_submitted()
    note_submitted(
        {
            "job_id": job_id,
            "config": str(Path(config).resolve()),
            "views": loaded.views,
            "jobmanager": jobmanager,
            "pid": run.process.pid,
            "submitted": time.time(),
        }
    )
    click.echo(f"submitted Flink job {job_id}" + (f" to {jobmanager}" if jobmanager else ""))
    if jobmanager:
        run.process.wait()
        return
    try:
        code = run.process.wait()
    except KeyboardInterrupt:
        # Ctrl-C (or SIGINT): end the runner's process group, its JVM included; the
        # job's last completed checkpoint stays for --from-checkpoint.
        os.killpg(run.process.pid, signal.SIGTERM)
        run.process.wait()
        click.echo(f"stopped Flink job {job_id}")
        return
    if code:
        raise click.ClickException(f"the Flink job ended with exit code {code}")
