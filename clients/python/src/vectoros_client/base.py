"""What `Client` and `AsyncClient` share: their options, checked once, and the
per-call details (deadline, metadata, request id)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

from vectoros_client.channel import TLS, ChannelSettings, RetryPolicy

DEFAULT_RETRY = RetryPolicy()


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def check_timeout(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}: must be a number of seconds > 0, got {value!r}")
    return float(value)


class ClientOptions:
    """Connection options and defaults of a client (see `Client`)."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TLS | bool | None = None,
        timeout: float = 30.0,
        stream_timeout: float = 300.0,
        wait_for_ready: bool = True,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        keepalive_seconds: float | None = 30.0,
        max_message_mb: int = 16,
        allow_plaintext_token: bool = False,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if tls is True:
            tls = TLS()
        elif tls is False:
            tls = None
        elif tls is not None and not isinstance(tls, TLS):
            raise TypeError(f"tls: must be a vectoros_client.TLS, True or None, got {type(tls).__name__}")
        self.settings = ChannelSettings(
            target=target, token=token, tls=tls, keepalive_seconds=keepalive_seconds,
            max_message_mb=max_message_mb, retry=retry, allow_plaintext_token=allow_plaintext_token,
            channel_options=tuple(channel_options),
        )
        self.timeout = check_timeout(timeout, "timeout")
        self.stream_timeout = check_timeout(stream_timeout, "stream_timeout")
        self.wait_for_ready = bool(wait_for_ready)

    def call_kwargs(self, timeout: float | None, default: float, request_id: str) -> dict[str, Any]:
        """Keyword arguments of one gRPC call: its deadline, metadata and wait_for_ready."""
        return {
            "timeout": default if timeout is None else check_timeout(timeout, "timeout"),
            "metadata": self.settings.metadata(request_id),
            "wait_for_ready": self.wait_for_ready,
        }
