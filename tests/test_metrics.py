"""The runtime's Prometheus metrics, scraped over HTTP from the meeting-room demo and from
the ``runtime.metrics`` server, and parsed with prometheus_client's own text parser."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import BaseModel, ConfigDict
from waiting import wait_for

from onto_core import plugins
from onto_core.builtin.memory import channel, drop_channels
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.config import load_config
from onto_core.errors import SinkError
from onto_core.hookspecs import hookimpl
from onto_core.prometheus import RUNTIME_METRICS
from onto_core.protocols import Guarantee, Message
from onto_core.runtime import Runtime
from onto_core.testing import running
from onto_web.metrics import WEB_METRICS
from onto_websocket.metrics import SOCKET_METRICS
from onto_websocket.testing import ViewClient, free_port

ROOT = Path(__file__).parents[1]
VIEW = "meeting_session"
KNOWN = {spec.name: spec for spec in (*RUNTIME_METRICS, *WEB_METRICS, *SOCKET_METRICS)}


def scrape(url: str, headers: dict[str, str] | None = None) -> list[Sample]:
    """Every sample at ``url``, parsed by prometheus_client."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    return sum(found) if found else None


@pytest.fixture
def demo(
    seeded_store: SqliteDatastore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Runtime, str]]:
    """examples/meeting_room/web.yaml on a free port, serving ``seeded_store``."""
    monkeypatch.chdir(ROOT)  # web.yaml's page_dir is relative to the repository root
    monkeypatch.setenv("ONTO_PORT", str(free_port()))
    monkeypatch.setenv("ONTO_DB", str(tmp_path / "unused.db"))
    config = load_config(ROOT / "examples" / "meeting_room" / "web.yaml")
    with running(config, datastore=seeded_store) as runtime:
        yield runtime, f"http://127.0.0.1:{os.environ['ONTO_PORT']}"


def test_meeting_room_metrics_match_the_runtime_after_known_actions(
    demo: tuple[Runtime, str],
) -> None:
    runtime, url = demo
    joshua = ViewClient().connect(url)
    tijuana = ViewClient().connect(url)
    try:
        assert joshua.subscribe(VIEW, "meeting-1/joshua") == {"ok": True}
        assert tijuana.subscribe(VIEW, "meeting-1/tijuana") == {"ok": True}
        assert tijuana.subscribe(VIEW, "meeting-1/thomasina") == {"ok": True}
        for attending in (False, True, False):
            answer = joshua.action(
                VIEW, "meeting-1/joshua", "set_attendance", {"attending": attending}
            )
            assert answer["status"] == 200, answer
        tijuana.view_where(lambda v: "Joshua" not in str(v))

        def settled() -> list[Sample] | None:
            samples = scrape(f"{url}/metrics")
            actions_in = value(samples, "onto_messages_total", pipeline="actions", outcome="in")
            sessions = runtime.metrics()["sessions"]
            done = value(samples, "onto_messages_total", pipeline="sessions", outcome="acked")
            return samples if actions_in == 3 and done == sessions["in"] == 3 else None

        samples = wait_for(settled, "three actions and their three changes done")
        figures = runtime.metrics()
        for pipeline, counts in figures.items():
            source = next(r.source.label for n, r in runtime.runners.items() if n == pipeline)
            for outcome, component in [
                ("in", source),
                ("failed", "any"),
                ("retried", "any"),
                ("dead_lettered", "any"),
                ("acked", source),
                ("nacked", source),
            ]:
                labels = {"pipeline": pipeline, "component": component, "outcome": outcome}
                assert value(samples, "onto_messages_total", **labels) == counts[outcome], labels
            runner = runtime.runners[pipeline]
            for sink in runner.sinks:
                labels = {"pipeline": pipeline, "component": sink.label, "outcome": "out"}
                sunk = counts["out_by_sink"].get(sink.label, 0)
                assert value(samples, "onto_messages_total", **labels) == sunk, labels
            assert sum(counts["out_by_sink"].values()) == counts["out"]
            count = value(samples, "onto_message_latency_seconds_count", pipeline=pipeline)
            assert count == counts["acked"]
            inf = value(
                samples, "onto_message_latency_seconds_bucket", pipeline=pipeline, le="+Inf"
            )
            assert inf == count
            assert value(samples, "onto_buffer_messages", pipeline=pipeline) == 0
            assert value(samples, "onto_buffer_capacity_messages", pipeline=pipeline) == 1000

        view = figures["sessions"]["processors"]["processors[0] (view)"]
        assert value(samples, "onto_views", pipeline="sessions", view=VIEW) == view["views"] == 3
        recomputes = value(samples, "onto_view_recomputes_total", pipeline="sessions", view=VIEW)
        assert recomputes == view["recomputes"]
        assert value(samples, "onto_source_lag_messages", pipeline="sessions") == 0

        server = url.removeprefix("http://")
        assert value(samples, "onto_websocket_connections", server=server) == 2
        assert value(samples, "onto_websocket_subscriptions", server=server, view=VIEW) == 3
        # Routes by rule, never by path: the page's files share one series.
        for path in ("/", "/app.js", "/onto/socket.js"):
            urllib.request.urlopen(f"{url}{path}", timeout=10).close()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{url}/no-such-file.js", timeout=10)
        after = scrape(f"{url}/metrics")
        assert value(after, "onto_http_requests_total", route="/", status="200") == 1
        assert value(after, "onto_http_requests_total", route="/<path:name>", status="200") == 1
        assert value(after, "onto_http_requests_total", route="/<path:name>", status="404") == 1
        assert value(after, "onto_http_requests_total", route="/metrics", status="200") >= 1
        assert value(after, "onto_http_requests_total", route="/onto/socket.js", status="200") == 1
    finally:
        joshua.close()
        tijuana.close()
    assert_bounded_labels(after)


def assert_bounded_labels(samples: list[Sample]) -> None:
    """Every sample is a known metric, and no label carries a message id or a view key."""
    for sample in samples:
        base = sample.name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        assert sample.name in KNOWN or base in KNOWN, sample.name
        for name, label in sample.labels.items():
            assert "meeting-1" not in label, (sample.name, name, label)  # a view key's root
            assert "@" not in label, (sample.name, name, label)  # a change message id


def test_metrics_on_the_web_server_pass_its_host_check(demo: tuple[Runtime, str]) -> None:
    _, url = demo
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(f"{url}/metrics", headers={"Host": "attacker.example"})
    assert refused.value.code == 403
    samples = scrape(f"{url}/metrics")
    assert value(samples, "onto_http_requests_total", route="refused", status="403") == 1


def test_runtime_metrics_serves_the_same_metrics_without_a_web_server(tmp_path: Path) -> None:
    port = free_port()
    config = f"""
runtime: {{metrics: {{port: {port}}}}}
pipelines:
  numbers:
    source: {{type: generate, count: null, interval: 0.001}}
    sinks: [{{type: file, path: "{tmp_path / "out.jsonl"}"}}]
"""
    with running(config) as runtime:
        assert runtime.metrics_server is not None
        assert runtime.metrics_server.url == f"http://127.0.0.1:{port}/metrics"
        samples = wait_for(
            lambda: (
                (s := scrape(f"http://127.0.0.1:{port}/metrics"))
                and (value(s, "onto_messages_total", outcome="acked") or 0) >= 50
                and s
            ),
            "50 messages acked",
        )
        runtime_figures = runtime.metrics()["numbers"]
        acked = value(samples, "onto_messages_total", pipeline="numbers", outcome="acked")
        assert acked is not None
        assert acked <= runtime_figures["acked"]
        assert value(samples, "onto_message_latency_seconds_count", pipeline="numbers") == acked
        assert value(samples, "onto_messages_total", outcome="failed") == 0
        assert_bounded_labels(samples)
    with pytest.raises(urllib.error.URLError, match="refused"):  # stopped with the runtime
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


class OddRefusingSink:
    """Confirms even numbers and refuses odd ones (a sink some messages fail in)."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        self.config = config

    def write(self, messages: list[Message]) -> None:
        for message in messages:
            if message.value["n"] % 2:
                raise SinkError(f"odd: {message.value['n']}", message_id=message.id)


class TenNumbersSource:
    """Numbers 0 to 9, then nothing more (without ending, as a broker would)."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        self.numbers = [Message({"n": n}) for n in range(10)]

    async def read(self) -> Message | None:
        if self.numbers:
            return self.numbers.pop(0)
        await asyncio.Event().wait()  # until the runtime stops the pipeline
        return None

    def ack(self, message: Message) -> None:
        pass

    def nack(self, message: Message, error: BaseException) -> None:
        self.numbers.append(message)


class OddRefusingPlugin:
    @hookimpl
    def register_components(self, register: plugins.ComponentRegistrar) -> None:
        register.source("ten_numbers", TenNumbersSource)
        register.sink("odd_refusing", OddRefusingSink)


def test_out_is_counted_per_sink(tmp_path: Path) -> None:
    port = free_port()
    name = plugins.register_plugin(OddRefusingPlugin(), name="metrics-tests")
    config = f"""
runtime: {{metrics: {{port: {port}}}}}
pipelines:
  numbers:
    source: {{type: ten_numbers}}
    sinks:
      - {{type: file, path: "{tmp_path / "all.jsonl"}"}}
      - {{type: odd_refusing}}
    retry: {{max_attempts: 1}}
    dead_letter: {{type: file, path: "{tmp_path / "dead.jsonl"}"}}
"""
    try:
        with running(config) as runtime:
            samples = wait_for(
                lambda: (
                    (s := scrape(f"http://127.0.0.1:{port}/metrics"))
                    and value(s, "onto_messages_total", outcome="acked") == 10
                    and s
                ),
                "10 messages acked",
            )
            figures = runtime.metrics()["numbers"]
    finally:
        plugins.unregister_plugin(name)

    def out(component: str) -> float | None:
        return value(samples, "onto_messages_total", component=component, outcome="out")

    assert out("sinks[0] (file)") == 10
    assert out("sinks[1] (odd_refusing)") == 5
    assert value(samples, "onto_messages_total", outcome="dead_lettered") == 5
    assert figures["out_by_sink"] == {"sinks[0] (file)": 10, "sinks[1] (odd_refusing)": 5}
    assert figures["out"] == 15


def doubled(value: int) -> int:
    return value * 2


def test_metrics_are_served_while_a_pipeline_is_busy(tmp_path: Path) -> None:
    """A scrape is answered in the middle of a burst that keeps the event loop busy: the
    loop lets the server's thread have the GIL (runtime/_calls.py, share_the_gil)."""
    port = free_port()
    drop_channels()
    channel("burst-in").put(*range(600_000))  # left open: the pipeline runs on after it
    config = f"""
runtime: {{metrics: {{port: {port}}}}}
pipelines:
  burst:
    source: {{type: memory, channel: burst-in, keep_acked: 10}}
    processors: [{{type: map, function: "test_metrics:doubled"}}]
    sinks: [{{type: memory, channel: burst-out, keep_last: 10}}]
"""
    mid_burst: list[float] = []
    finished: list[float] = []

    def scrape_until_done() -> None:
        deadline = time.monotonic() + 120
        while not finished and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                samples = scrape(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                continue  # not listening yet
            acked = value(samples, "onto_messages_total", pipeline="burst", outcome="acked")
            if acked == 600_000:
                finished.append(acked)
            elif acked:
                mid_burst.append(acked)

    with running(config):
        # This thread only waits meanwhile: the loop's thread and the scraper compete.
        scraper = threading.Thread(target=scrape_until_done)
        scraper.start()
        scraper.join(130)
    assert finished, "the burst was not seen done"
    assert mid_burst, "no scrape was answered during the burst"
