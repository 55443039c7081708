"""The server's errors as exceptions: one class per status code the API uses,
all under `ApiError`, each keeping the code, the message, the field the server
named and the `google.rpc` details it sent.

The server answers bad input with INVALID_ARGUMENT, a message ``field: rule``
and a `google.rpc.BadRequest` detail (`violations`); a refused workspace or
role with PERMISSION_DENIED and a `google.rpc.ErrorInfo` whose metadata names
the `field`. A method the server does not serve (a client newer than the
server) is `Unimplemented`, with a message that says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from vectoros_client._version import __version__

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One broken rule: the field's path (``deals[3].value``) and the rule."""

    field: str
    description: str


class ApiError(Exception):
    """A call that did not succeed.

    `code` is the `grpc.StatusCode`; `message` the server's text; `method` the
    RPC (``/vectoros.v1.ScoringService/ScoreDeal``); `request_id` the
    ``x-request-id`` the client sent, which the server logs beside the call;
    `violations` the `BadRequest` field violations; `reason`, `domain` and
    `metadata` the `ErrorInfo` detail; `field` the first field named by either;
    `status` the whole `google.rpc.Status` (None when the server sent none);
    `rpc_error` the grpc exception itself.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        method: str = "",
        request_id: str = "",
        status: status_pb2.Status | None = None,
        rpc_error: grpc.RpcError | None = None,
    ) -> None:
        self.code = code
        self.rpc_error = rpc_error
        self.message = message
        self.method = method
        self.request_id = request_id
        self.status = status
        violations: list[FieldViolation] = []
        info = None
        for detail in status.details if status is not None else ():
            bad_request = error_details_pb2.BadRequest()
            error_info = error_details_pb2.ErrorInfo()
            if detail.Is(bad_request.DESCRIPTOR) and detail.Unpack(bad_request):
                violations.extend(FieldViolation(v.field, v.description) for v in bad_request.field_violations)
            elif detail.Is(error_info.DESCRIPTOR) and detail.Unpack(error_info) and info is None:
                info = error_info
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        self.reason = info.reason if info is not None else ""
        self.domain = info.domain if info is not None else ""
        self.metadata: Mapping[str, str] = MappingProxyType(dict(info.metadata) if info is not None else {})
        super().__init__(self._text())

    @property
    def field(self) -> str | None:
        """The field the server named: the first violation's, else ErrorInfo's ``field``."""
        if self.violations:
            return self.violations[0].field
        return self.metadata.get("field")

    def _text(self) -> str:
        where = f" [{self.method}, request {self.request_id}]" if self.method else ""
        return f"{self.code.name}: {self.message}{where}"


class InvalidArgument(ApiError):
    """The request breaks a rule (INVALID_ARGUMENT, OUT_OF_RANGE); see `violations`."""


class NotFound(ApiError):
    """Something the request names does not exist (NOT_FOUND)."""


class FailedPrecondition(ApiError):
    """The request is valid but the server's state does not allow it (FAILED_PRECONDITION)."""


class PermissionDenied(ApiError):
    """The token may not do this: a workspace it does not hold, or a role too
    low for the method (PERMISSION_DENIED); `field` names what was refused."""


class Unauthenticated(ApiError):
    """No token, or one the server does not accept (UNAUTHENTICATED)."""


class Unavailable(ApiError):
    """The server cannot answer now: down, unreachable, or its model not loaded
    (UNAVAILABLE). Idempotent calls were already retried with backoff."""


class ResourceExhausted(ApiError):
    """The server is overloaded or the token has too many calls in flight
    (RESOURCE_EXHAUSTED). Idempotent calls were already retried with backoff."""


class DeadlineExceeded(ApiError):
    """The call did not finish before its deadline (DEADLINE_EXCEEDED)."""


class Cancelled(ApiError):
    """The call was cancelled (CANCELLED)."""


class Unimplemented(ApiError):
    """The server does not serve this method (UNIMPLEMENTED): it implements an
    older API than this client's."""


class Internal(ApiError):
    """The server failed (INTERNAL, UNKNOWN, DATA_LOSS, or a code this client
    does not expect); the server's log has the details under `request_id`."""


_BY_CODE: dict[grpc.StatusCode, type[ApiError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def _status_detail(trailing: Iterable[tuple[str, Any]] | None) -> status_pb2.Status | None:
    for key, value in trailing or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None
    return None


def from_rpc_error(error: grpc.RpcError, *, method: str = "", request_id: str = "") -> ApiError:
    """The `ApiError` subclass for a failed call of grpc or grpc.aio (an object
    with ``code()``, ``details()`` and ``trailing_metadata()``)."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
    message = (error.details() if callable(getattr(error, "details", None)) else None) or ""
    trailing = error.trailing_metadata() if callable(getattr(error, "trailing_metadata", None)) else None
    status = _status_detail(trailing)
    if code is grpc.StatusCode.UNIMPLEMENTED:
        message = (
            f"the server does not serve {method or 'this method'} ({message or 'no message'}): it runs an "
            f"older API than this client (vectoros-client {__version__}); upgrade the server, or use the "
            "client release with the server's version"
        )
    kind = _BY_CODE.get(code, Internal)
    return kind(code, message, method=method, request_id=request_id, status=status, rpc_error=error)
