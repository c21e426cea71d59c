"""onto-kafka: Kafka source and sink for onto, on kafka-python.

Components: the ``kafka`` source (a consumer-group member, or a reader of every
partition, that commits offsets only once every sink confirmed), the ``kafka_decode``
processor (record bytes into JSON, text or a model; undecodable records are
dead-lettered), the ``kafka`` sink (an idempotent producer; a transactional one for
exactly_once Kafka-to-Kafka pipelines) and the ``kafka`` shard coordinator (shard
ownership for sharded view workers, as a consumer group's partition assignment).
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # kafka-python loads its protocol schemas at import through importlib.resources
    # functions Python deprecates: nothing a user of this plugin can act on.
    warnings.filterwarnings("ignore", "(read|open)_text is deprecated", DeprecationWarning)
    import kafka  # type: ignore[import-untyped]  # noqa: F401

from onto_core import ComponentRegistrar, hookimpl
from onto_kafka._codecs import CodecError, KeyFormat, ValueFormat
from onto_kafka._connection import KafkaConnection
from onto_kafka._coordinator import KafkaShardCoordinator
from onto_kafka._decode import KafkaDecodeProcessor
from onto_kafka._offsets import OffsetTracker, Position
from onto_kafka._records import (
    BASE64_HEADERS,
    ERROR_HEADER,
    LAST_OFFSET_HEADER,
    NULL_HEADERS,
    UnreadableRecords,
)
from onto_kafka._sink import KafkaSink, MessageTemplate
from onto_kafka._source import (
    OFFSET_HEADER,
    PARTITION_HEADER,
    TOPIC_HEADER,
    KafkaPositions,
    KafkaSource,
)

__all__ = [
    "BASE64_HEADERS",
    "ERROR_HEADER",
    "LAST_OFFSET_HEADER",
    "NULL_HEADERS",
    "OFFSET_HEADER",
    "PARTITION_HEADER",
    "TOPIC_HEADER",
    "CodecError",
    "KafkaConnection",
    "KafkaDecodeProcessor",
    "KafkaPositions",
    "KafkaShardCoordinator",
    "KafkaSink",
    "KafkaSource",
    "KeyFormat",
    "MessageTemplate",
    "OffsetTracker",
    "Position",
    "UnreadableRecords",
    "ValueFormat",
    "register_components",
]


@hookimpl
def register_components(register: ComponentRegistrar) -> None:
    register.source("kafka", KafkaSource)
    register.processor("kafka_decode", KafkaDecodeProcessor)
    register.sink("kafka", KafkaSink)
    register.coordinator("kafka", KafkaShardCoordinator)
