"""The ``kafka_decode`` processor: record bytes into values the next steps understand."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from onto_core.errors import ProcessorError
from onto_core.protocols import Message, ProcessorResult
from onto_kafka._codecs import CodecError, ValueFormat, decode_value, load_model
from onto_kafka._records import UnreadableRecords

__all__ = ["KafkaDecodeProcessor"]


class KafkaDecodeProcessor:
    """Decodes each message's value (the bytes a kafka source delivers).

    A value that does not decode raises ``ProcessorError``, so the runtime dead-letters
    the original message (its bytes and its ``kafka-topic``, ``kafka-partition`` and
    ``kafka-offset`` headers, plus ``onto-error``) once the pipeline's retries are spent,
    and the pipeline moves on. A message standing for records the source could not read
    (its value an ``UnreadableRecords``) fails the same way. Other values that are not
    bytes (already decoded) pass through unchanged.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        value_format: ValueFormat = Field(
            ValueFormat.JSON,
            description=(
                "json, str (UTF-8), bytes (unchanged), model (JSON validated into `model`)"
                " or auto (JSON if it parses, else text, else bytes)."
            ),
        )
        model: str | None = Field(
            None,
            description=(
                "For value_format model: the DomainModel or pydantic model, as 'module:Class'."
            ),
        )

        @field_validator("model")
        @classmethod
        def _loadable(cls, ref: str | None) -> str | None:
            if ref is not None:
                load_model(ref)
            return ref

        @model_validator(mode="after")
        def _model_given(self) -> KafkaDecodeProcessor.Config:
            if self.value_format is ValueFormat.MODEL and self.model is None:
                raise ValueError("value_format model needs `model: 'module:Class'`")
            if self.model is not None and self.value_format is not ValueFormat.MODEL:
                raise ValueError("`model` is used only with value_format model")
            return self

    def __init__(self, config: Config) -> None:
        self.config = config
        self.format = config.value_format
        self.model: type[BaseModel] | None = (
            load_model(config.model) if config.model is not None else None
        )

    def _decode(self, message: Message) -> Message:
        value: Any = message.value
        if not isinstance(value, bytes | bytearray | memoryview):
            if isinstance(value, UnreadableRecords):
                raise ProcessorError(value.describe(), message_id=message.id)
            return message
        try:
            decoded = decode_value(bytes(value), self.format, self.model)
        except CodecError as exc:
            raise ProcessorError(
                f"cannot decode message {message.id} as {self.format.value}: {exc}",
                message_id=message.id,
            ) from None
        message.value = decoded
        return message

    def process(self, message: Message) -> ProcessorResult:
        return self._decode(message)

    def process_batch(self, messages: list[Message]) -> list[ProcessorResult]:
        """The messages decoded; raises for the first that fails (the runtime then
        decodes one at a time to dead-letter only that one)."""
        return [self._decode(m) for m in messages]
