"""A prepared call: the RPC, its request message, and how to read the answer.

The service modules (`vectoros_client.services`) build these from plain Python
arguments; `Client` and `AsyncClient` run them, so both share every request
and every conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from vectoros_client.rpcs import Rpc

T = TypeVar("T")


@dataclass(frozen=True)
class Unary(Generic[T]):
    """One request, one response, read by `parse`."""

    rpc: Rpc
    request: Message
    parse: Callable[[Any], T]


@dataclass(frozen=True)
class Streamed(Generic[T]):
    """One request, a stream of responses; `parse` turns each into items."""

    rpc: Rpc
    request: Message
    parse: Callable[[Any], Iterable[T]]
