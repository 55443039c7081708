"""How a client connects: TLS (and mutual TLS), the bearer token, keepalive,
message limits and the retry policy, turned into one gRPC channel.

Retries are gRPC's own, from the service config (`service_config`): the
idempotent RPCs of `vectoros_client.rpcs` are retried with exponential backoff
on UNAVAILABLE and RESOURCE_EXHAUSTED inside the call's deadline, and retry
throttling stops retrying when most calls of the channel fail. The TypeScript
client builds the same service config.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from vectoros_client import rpcs
from vectoros_client._version import __version__

MIB = 1024 * 1024
# The server refuses pings more often than every 10 s without data
# (grpc.http2.min_ping_interval_without_data_ms) and closes the connection.
MIN_KEEPALIVE_SECONDS = 10.0
# gRPC caps attempts at 5 whatever the config says.
MAX_ATTEMPTS = 5


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") + "s"


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of idempotent calls: up to `max_attempts` attempts in all, waits
    drawn at random up to initial_backoff * multiplier**n, capped at max_backoff
    (seconds), on the listed status codes."""

    max_attempts: int = 4
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    retryable_codes: tuple[str, ...] = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= MAX_ATTEMPTS:
            raise ValueError(f"retry.max_attempts: must be 2 to {MAX_ATTEMPTS} (gRPC's cap), got {self.max_attempts}")
        if not (self.initial_backoff > 0 and self.max_backoff >= self.initial_backoff):
            raise ValueError("retry: initial_backoff must be > 0 and max_backoff >= initial_backoff")
        if not self.multiplier >= 1:
            raise ValueError(f"retry.multiplier: must be >= 1, got {self.multiplier}")
        unknown = [code for code in self.retryable_codes if code not in grpc.StatusCode.__members__ or code == "OK"]
        if unknown or not self.retryable_codes:
            raise ValueError(f"retry.retryable_codes: must be gRPC status code names, got {unknown or 'none'}")

    def to_json(self) -> dict[str, Any]:
        return {
            "maxAttempts": self.max_attempts,
            "initialBackoff": _seconds(self.initial_backoff),
            "maxBackoff": _seconds(self.max_backoff),
            "backoffMultiplier": self.multiplier,
            "retryableStatusCodes": list(self.retryable_codes),
        }


def service_config(retry: RetryPolicy | None) -> dict[str, Any]:
    """The gRPC service config: `retry` for the idempotent RPCs; none retried
    when `retry` is None."""
    if retry is None:
        return {}
    names = [{"service": rpc.full_service, "method": rpc.name} for rpc in rpcs.ALL if rpc.idempotent]
    return {
        "methodConfig": [{"name": names, "retryPolicy": retry.to_json()}],
        # Each failed call spends a token, each success earns 0.1; below half of
        # max_tokens nothing is retried, so a failing server gets no retry storm.
        "retryThrottling": {"maxTokens": 20, "tokenRatio": 0.1},
    }


def _pem(value: bytes | str | Path | None, name: str) -> bytes | None:
    """PEM bytes from bytes, PEM text or a file path."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return value.encode("ascii")
    if not isinstance(value, str | Path):
        raise TypeError(f"tls.{name}: must be PEM bytes or text or a file path, got {type(value).__name__}")
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise ValueError(f"tls.{name}: cannot read {str(value)!r} ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class TLS:
    """TLS to the server. `root_certificates`: the CA that signed the server's
    certificate (None: the system's roots). `certificate_chain` and
    `private_key` together: the client's own certificate, for mutual TLS.
    Each is PEM bytes, PEM text or a file path. `server_name` overrides the name
    checked against the server's certificate (for example when connecting by IP
    to a certificate issued for a DNS name)."""

    root_certificates: bytes | str | Path | None = None
    certificate_chain: bytes | str | Path | None = None
    private_key: bytes | str | Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("tls: give certificate_chain and private_key together (mutual TLS), or neither")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.root_certificates, "root_certificates"),
            private_key=_pem(self.private_key, "private_key"),
            certificate_chain=_pem(self.certificate_chain, "certificate_chain"),
        )


def target_host(target: str) -> str:
    """The host of a target such as ``host:port``, ``[::1]:port`` or ``dns:///host:port``."""
    if target.startswith("unix:") or target.startswith("unix-abstract:"):
        return "localhost"
    rest = target.split(":///", 1)[1] if ":///" in target else target
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    host, _, port = rest.rpartition(":")
    return host if host and port.isdigit() else rest


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ChannelSettings:
    """Everything a channel needs; `Client` and `AsyncClient` take these as
    keyword arguments (see `Client` for their meaning)."""

    target: str
    token: str | None = None
    tls: TLS | None = None
    keepalive_seconds: float | None = 30.0
    max_message_mb: int = 16
    retry: RetryPolicy | None = field(default_factory=RetryPolicy)
    allow_plaintext_token: bool = False
    channel_options: Sequence[tuple[str, Any]] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target.strip():
            raise ValueError("target: must be an address such as '127.0.0.1:50051'")
        if self.token is not None:
            if not isinstance(self.token, str) or not self.token or self.token != self.token.strip() \
                    or any(c in self.token for c in " \r\n\t"):
                raise ValueError("token: must be a non-empty string without spaces or line breaks")
            if self.tls is None and not self.allow_plaintext_token and not is_loopback(target_host(self.target)):
                raise ValueError(
                    f"token: refusing to send a bearer token without TLS to {self.target!r} (not a loopback "
                    "address); pass tls=TLS(...), or allow_plaintext_token=True when a proxy on the way adds TLS"
                )
        if self.keepalive_seconds is not None and not self.keepalive_seconds >= MIN_KEEPALIVE_SECONDS:
            raise ValueError(
                f"keepalive_seconds: must be >= {MIN_KEEPALIVE_SECONDS:g} (the server closes connections that "
                f"ping more often) or None, got {self.keepalive_seconds}"
            )
        if not isinstance(self.max_message_mb, int) or self.max_message_mb < 1:
            raise ValueError(f"max_message_mb: must be a whole number >= 1, got {self.max_message_mb!r}")

    def options(self) -> list[tuple[str, Any]]:
        """Channel arguments: limits, keepalive, the service config, the user agent."""
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", self.max_message_mb * MIB),
            ("grpc.max_send_message_length", self.max_message_mb * MIB),
            ("grpc.primary_user_agent", f"vectoros-client-python/{__version__}"),
            ("grpc.enable_retries", 1 if self.retry is not None else 0),
            ("grpc.service_config", json.dumps(service_config(self.retry))),
        ]
        if self.keepalive_seconds is not None:
            # Pings only while calls are open: the server counts pings on an idle
            # connection as abuse.
            options += [
                ("grpc.keepalive_time_ms", int(self.keepalive_seconds * 1000)),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 0),
            ]
        if self.tls is not None and self.tls.server_name:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name))
        return options + list(self.channel_options)

    def channel(self) -> grpc.Channel:
        if self.tls is None:
            return grpc.insecure_channel(self.target, options=self.options())
        return grpc.secure_channel(self.target, self.tls.credentials(), options=self.options())

    def aio_channel(self) -> grpc.aio.Channel:
        if self.tls is None:
            return grpc.aio.insecure_channel(self.target, options=self.options())
        return grpc.aio.secure_channel(self.target, self.tls.credentials(), options=self.options())

    def metadata(self, request_id: str) -> tuple[tuple[str, str], ...]:
        """Per-call metadata: the request id (logged by the server) and the token."""
        if self.token is None:
            return (("x-request-id", request_id),)
        return (("x-request-id", request_id), ("authorization", f"Bearer {self.token}"))
