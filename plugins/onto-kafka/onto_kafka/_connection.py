"""Settings every Kafka component shares: where the brokers are and how to log in."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from onto_core.config import is_secret_key, redact

__all__ = ["KafkaConnection"]


class KafkaConnection(BaseModel):
    """The connection part of a Kafka component's settings."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:9092"],
        description=(
            "Brokers to contact first, as 'host:port' (a list, or one string with commas);"
            " e.g. '${KAFKA_BOOTSTRAP_SERVERS:127.0.0.1:9092}'."
        ),
    )
    client_id: str | None = Field(
        None, description="Client id the brokers log; default: onto-<pipeline>."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How to talk to the brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, with security_protocol SASL_*."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password.")
    ssl_cafile: Path | None = Field(
        None, description="CA bundle that signed the brokers' certificates (SSL, SASL_SSL)."
    )
    connect_timeout_ms: int = Field(
        30000, ge=1, description="How long start waits to reach a broker before failing."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Further kafka-python client settings, passed as they are"
            " (e.g. {request_timeout_ms: 10000}); the settings above take precedence."
        ),
    )

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port(cls, servers: list[str]) -> list[str]:
        if not servers:
            raise ValueError("name at least one broker as 'host:port'")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected 'host:port', got {server!r}")
        return servers

    def client_settings(self, default_client_id: str) -> dict[str, Any]:
        """Keyword arguments for a kafka-python client built from these settings."""
        settings: dict[str, Any] = {
            **self.options,
            "bootstrap_servers": list(self.bootstrap_servers),
            "client_id": self.client_id or default_client_id,
            "security_protocol": self.security_protocol,
            "bootstrap_timeout_ms": self.connect_timeout_ms,
        }
        if self.sasl_mechanism is not None:
            settings["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            settings["sasl_plain_username"] = self.sasl_username
        if self.sasl_password is not None:
            settings["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile is not None:
            settings["ssl_cafile"] = str(self.ssl_cafile)
        return settings

    def describe(self) -> str:
        """The brokers, for error messages."""
        return ",".join(self.bootstrap_servers)

    def unknown_options(self, client: type) -> str | None:
        """Why ``options`` does not suit kafka-python's ``client`` class, or None.

        Names the unknown keys (with the nearest known names) and never their values: an
        unknown key may be a misspelt password setting. kafka-python's own "Unrecognized
        configs" error prints the values.
        """
        known: dict[str, Any] = getattr(client, "DEFAULT_CONFIG", {})
        unknown = sorted(set(self.options) - set(known))
        if not known or not unknown:
            return None
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=2)
            hints.append(f"{name!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        verb = "is not a setting" if len(unknown) == 1 else "are not settings"
        return f"options {', '.join(hints)} {verb} of kafka-python's {client.__name__}"

    def redact(self, error: object) -> str:
        """``error`` as text with every secret of these settings replaced by ``***``.

        For error and log lines that quote a client library's message, which may echo
        settings: the SASL password, any option whose name looks secret
        (``onto_core.config.is_secret_key``) and passwords in URLs.
        """
        text: str = redact(str(error), "")
        secrets = [
            value
            for name, value in self.options.items()
            if is_secret_key(name) and isinstance(value, str) and value
        ]
        if self.sasl_password is not None:
            secrets.append(self.sasl_password.get_secret_value())
        for secret in sorted(secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "***")
        return text
