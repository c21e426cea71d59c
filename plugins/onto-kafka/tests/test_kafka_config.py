"""Kafka settings are checked when a config is read, and failures name what to fix."""

from __future__ import annotations

import socket

import pytest

from onto_core.config import parse_config
from onto_core.errors import ComponentError, ConfigError
from onto_core.testing import running


def source_config(settings: str, processors: str = "[]", sink: str = "{type: stdout}") -> str:
    return f"""
pipelines:
  orders:
    source: {{type: kafka, {settings}}}
    processors: {processors}
    sinks: [{sink}]
"""


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("topics: [a], pattern: 'a.*', group_id: g", "give either `topics` (a list) or `pattern`"),
        ("group_id: g", "give either `topics` (a list) or `pattern`"),
        ("topics: [], group_id: g", "`topics` must name at least one topic"),
        ("topics: [a]", "group_id: required key is missing"),
        ("topics: [a], group_id: g, bootstrap_servers: kafka", "expected 'host:port', got 'kafka'"),
        (
            "topics: [a], group_id: g, start_from: beginning",
            "should be 'committed', 'earliest' or 'latest', got 'beginning'",
        ),
        (
            "topics: [a], group_id: g, session_timeout_ms: 1000",
            "heartbeat_interval_ms must be less than session_timeout_ms",
        ),
    ],
)
def test_a_wrong_source_setting_is_reported_with_its_key(settings: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(source_config(settings), "orders.yaml")
    message = str(caught.value)
    assert expected in message
    assert "orders.yaml" in message
    assert "pipelines.orders.source" in message


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        ("{type: kafka, topic: 'bad topic!'}", "'bad topic!' is not a valid topic name"),
        ("{type: kafka}", "topic: required key is missing"),
        ("{type: kafka, topic: t, value_format: yaml}", "expected one of: json, str, bytes"),
        ("{type: kafka, topic: t, acks: 2}", "should be 'all', '1' or '0'"),
        ("{type: kafka, topic: t, acks: 1}", "enable_idempotence needs acks: all (got acks: 1)"),
        ("{type: kafka, topic: t, value_format: model}", "models are written as JSON"),
    ],
)
def test_a_wrong_sink_setting_is_reported_with_its_key(sink: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(source_config("topics: [a], group_id: g", sink=sink), "orders.yaml")
    assert expected in str(caught.value)
    assert "pipelines.orders.sinks[0]" in str(caught.value)


@pytest.mark.parametrize(
    ("decode", "expected"),
    [
        ("{type: kafka_decode, value_format: model}", "value_format model needs `model:"),
        ("{type: kafka_decode, model: 'json:loads'}", "is not a pydantic model"),
        ("{type: kafka_decode, value_format: model, model: 'nowhere:Thing'}", "cannot import"),
    ],
)
def test_a_wrong_decode_setting_is_reported(decode: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(source_config("topics: [a], group_id: g", processors=f"[{decode}]"))
    assert expected in str(caught.value)


def test_templates_comma_separated_servers_and_numeric_acks_are_accepted() -> None:
    config = parse_config(
        source_config(
            "topics: [a], group_id: g, bootstrap_servers: 'h1:9092, h2:9093'",
            sink="{type: kafka, topic: 'views-{view}', acks: 1, enable_idempotence: false}",
        )
    )
    pipeline = config.pipelines["orders"]
    assert pipeline.source.config.model_dump()["bootstrap_servers"] == ["h1:9092", "h2:9093"]
    assert pipeline.sinks[0].config.model_dump()["acks"] == "1"


def test_the_sasl_password_is_redacted_when_the_config_is_shown() -> None:
    config = parse_config(
        source_config(
            "topics: [a], group_id: g, security_protocol: SASL_SSL, sasl_mechanism: PLAIN,"
            " sasl_username: onto, sasl_password: hunter2"
        )
    )
    shown = config.redacted()["pipelines"]["orders"]["source"]
    assert shown["sasl_password"] == "***"
    assert shown["sasl_username"] == "onto"


def test_an_unreachable_broker_fails_the_start_naming_the_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: nothing answers there
        config = source_config(
            f"topics: [a], group_id: g, bootstrap_servers: '127.0.0.1:{port}',"
            " connect_timeout_ms: 500"
        )
        with pytest.raises(ComponentError) as caught, running(config, timeout=30):
            pass
    assert f"cannot connect to Kafka at 127.0.0.1:{port}" in str(caught.value)


VIEW = '{type: view, view: "examples.meeting_room.views:MeetingSession"'


def test_a_view_pipeline_on_a_consumer_group_is_refused_naming_the_line() -> None:
    text = source_config("topics: [changes], group_id: views", f"[{VIEW}}}]")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "views.yaml")
    message = str(caught.value)
    assert message.startswith("views.yaml:5: pipelines.orders.processors[0]: processor 'view':")
    assert "(for kafka: `partitions: all`)" in message
    parse_config(text.replace("group_id: views", "group_id: views, partitions: all"), "v.yaml")


def test_a_coordinator_sharing_the_sources_group_is_refused() -> None:
    coordinator = "coordinator: {type: kafka, topic: shards, group_id: views}"
    text = source_config(
        "topics: [changes], group_id: views, partitions: all",
        f"[{VIEW}, shards: 4, {coordinator}}}]",
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "views.yaml")
    assert "group_id 'views' is also the group of the kafka coordinator" in str(caught.value)
    parse_config(text.replace("group_id: views}", "group_id: views-shards}"), "views.yaml")


SECRET_OPTIONS = "options: {sasl_password: hunter2, bogus_key: x, ssl_password: s3cret}"


@pytest.mark.parametrize(
    "config",
    [
        source_config(f"topics: [a], group_id: g, {SECRET_OPTIONS}"),
        source_config(
            "topics: [a], group_id: g", sink=f"{{type: kafka, topic: t, {SECRET_OPTIONS}}}"
        ),
    ],
    ids=["source", "sink"],
)
def test_unknown_options_fail_the_start_by_name_without_their_values(config: str) -> None:
    with pytest.raises(ComponentError) as caught, running(config, timeout=30):
        pass
    message = str(caught.value)
    assert "'bogus_key'" in message
    assert "'sasl_password' (did you mean " in message
    assert "sasl_plain_password" in message
    assert "hunter2" not in message
    assert "s3cret" not in message


def test_client_errors_quoted_in_messages_have_their_secrets_redacted() -> None:
    from onto_kafka import KafkaConnection

    connection = KafkaConnection(
        sasl_password="hunter2",  # type: ignore[arg-type]
        options={"ssl_password": "s3cret", "request_timeout_ms": 1000},
    )
    said = connection.redact("auth failed for {'sasl_plain_password': 'hunter2', 'k': 's3cret'}")
    assert said == "auth failed for {'sasl_plain_password': '***', 'k': '***'}"
