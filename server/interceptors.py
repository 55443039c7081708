"""Cross-cutting concerns for every RPC, in one interceptor: who is calling, how
many calls a caller has in flight, error mapping, metrics and the request log.

Per call, in this order:

1. A request protobuf cannot parse (a string field that is not UTF-8, truncated
   bytes) is INVALID_ARGUMENT on the field `request`, not gRPC's UNKNOWN.
2. With a tokens file (`server.auth.TokenAuthority`), every RPC but health and
   reflection needs ``authorization: Bearer <token>``: none or a bad one is
   UNAUTHENTICATED (the token is never repeated); a role too low for the method
   or any workspace the request names that the token does not hold is
   PERMISSION_DENIED naming the field (`server.access`).
3. A token with `max_inflight_per_token` calls already running gets
   RESOURCE_EXHAUSTED at once, while other callers are served.
4. Project exceptions (`vectoros.core.errors`) become the gRPC status their
   code name names, with their message; `InvalidInput` also carries a
   `google.rpc.BadRequest` detail naming the field, `PermissionDenied` a
   `google.rpc.ErrorInfo` with the field. Anything else becomes INTERNAL with a
   generic message, and the traceback goes to the log only.
5. With metrics on, every call counts by method and code, and its latency goes
   into a histogram by method (`server.metrics`).
6. One log line per call: method, code, latency, the request id (the caller's
   `x-request-id` metadata, else generated), the caller's token id and the
   first workspace the request names; never the token itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.access import CALLER, named_workspaces, required_role
from server.auth import Principal, Role, TokenAuthority
from server.metrics import Metrics
from vectoros.core.errors import InvalidInput, Overloaded, PermissionDenied, VectorOSError, unparsable

log = logging.getLogger("vectoros.rpc")

INTERNAL_MESSAGE = "internal error; see the server log"
REQUEST_ID = "x-request-id"
AUTHORIZATION = "authorization"
MAX_REQUEST_ID = 128


def status_code(error: VectorOSError) -> grpc.StatusCode:
    """The gRPC status for a project error's code name (the one place they meet)."""
    return grpc.StatusCode[error.code]


def _status_for(error: VectorOSError) -> grpc.Status:
    detail = status_pb2.Status(code=status_code(error).value[0], message=error.message)
    extra = None
    if isinstance(error, InvalidInput):
        extra = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.rule)]
        )
    elif isinstance(error, PermissionDenied):
        extra = error_details_pb2.ErrorInfo(reason="PERMISSION_DENIED", domain="vectoros",
                                            metadata={"field": error.field})
    if extra is not None:
        packed = any_pb2.Any()
        packed.Pack(extra)
        detail.details.append(packed)
    return rpc_status.to_status(detail)


@dataclass(frozen=True)
class CallPolicy:
    """What the interceptor enforces. No authority: every caller is trusted (the
    server refuses that on a non-loopback address unless told to allow it)."""

    authority: TokenAuthority | None = None
    # Calls one token may have running at once; 0 = no cap.
    max_inflight_per_token: int = 0
    # Requests and latency by method and code (Prometheus); None = not counted.
    metrics: Metrics | None = None


class _Call:
    """Tracks one call's outcome for the log line."""

    __slots__ = ("method", "metrics", "started", "code", "request_id", "caller", "workspace")

    def __init__(self, method: str, metrics: Metrics | None = None) -> None:
        self.method = method
        self.metrics = metrics
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK
        self.request_id = ""
        self.caller = ""
        self.workspace = ""

    async def fail(self, error: BaseException, context: grpc.aio.ServicerContext) -> None:
        """Record the error's code and abort the call with it (raises)."""
        if isinstance(error, VectorOSError):
            self.code = status_code(error)
            await context.abort_with_status(_status_for(error))
        self.code = grpc.StatusCode.INTERNAL
        log.error("unhandled error in %s", self.method, exc_info=error,
                  extra={"method": self.method, "request_id": self.request_id})
        await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    def finish(self, context: grpc.aio.ServicerContext) -> None:
        if self.code is grpc.StatusCode.OK:
            code = context.code()
            if code is not None and code != grpc.StatusCode.OK:
                self.code = code if isinstance(code, grpc.StatusCode) else _code_from_int(code)
        seconds = time.perf_counter() - self.started
        if self.metrics is not None:
            self.metrics.observe_rpc(self.method, self.code.name, seconds)
        latency_ms = seconds * 1000
        level = logging.ERROR if self.code is grpc.StatusCode.INTERNAL else logging.INFO
        extra = {"method": self.method, "code": self.code.name, "latency_ms": round(latency_ms, 3),
                 "request_id": self.request_id}
        if self.caller:
            extra["caller"] = self.caller
        if self.workspace:
            extra["workspace"] = self.workspace
        log.log(level, "rpc", extra=extra)


def _code_from_int(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


class _Gate:
    """Authentication, authorization and the per-token cap for one method."""

    def __init__(self, method: str, policy: CallPolicy, inflight: dict[str, int]) -> None:
        self.method = method
        self.role: Role | None = required_role(method)
        self.authority = policy.authority if self.role is not None else None
        self.cap = policy.max_inflight_per_token
        self.inflight = inflight
        self.metrics = policy.metrics

    def enter(self, call: _Call, request: Any, context: grpc.aio.ServicerContext) -> str | None:
        """Check the caller; returns the token id whose slot the call holds, if any."""
        authorization = None
        for key, value in context.invocation_metadata() or ():
            if key == REQUEST_ID:
                call.request_id = value[:MAX_REQUEST_ID]
            elif key == AUTHORIZATION:
                authorization = value
        if not call.request_id:
            call.request_id = uuid.uuid4().hex[:16]
        if self.role is None:
            return None
        if self.authority is None:
            for _, workspace in named_workspaces(request):
                call.workspace = workspace
                break
            return None
        principal: Principal = self.authority.authenticate(authorization)
        call.caller = principal.token_id
        # Each RPC runs in its own task, so this is this call's caller only.
        CALLER.set(principal)
        principal.require_role(self.role, self.method.rpartition("/")[2])
        for field, workspace in named_workspaces(request):
            if not call.workspace:
                call.workspace = workspace
            principal.require_workspace(field, workspace)
        if self.cap:
            running = self.inflight.get(principal.token_id, 0)
            if running >= self.cap:
                raise Overloaded(f"this token already has {running} calls in flight (limit {self.cap}); retry later")
            self.inflight[principal.token_id] = running + 1
            return principal.token_id
        return None

    def leave(self, slot: str | None) -> None:
        if slot is not None:
            left = self.inflight[slot] - 1
            if left:
                self.inflight[slot] = left
            else:
                del self.inflight[slot]


class RpcInterceptor(grpc.aio.ServerInterceptor):
    """The server's one interceptor (see the module docstring)."""

    def __init__(self, policy: CallPolicy | None = None) -> None:
        self.policy = policy or CallPolicy()
        # token id -> calls running; touched on the event loop's thread only.
        self.inflight: dict[str, int] = {}
        # method -> (its handler, the wrapped handler). The registered handlers do
        # not change while the server runs, so each is wrapped once, not per call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _wrap_handler(method, handler, _Gate(method, self.policy, self.inflight))
        self._wrapped[method] = (handler, wrapped)
        return wrapped


# The name the tests and older callers use.
ErrorAndLogInterceptor = RpcInterceptor


def _wrap_handler(method: str, handler: grpc.RpcMethodHandler, gate: _Gate) -> grpc.RpcMethodHandler:
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(method, handler.unary_unary, gate),
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(method, handler.unary_stream, gate),
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    # Client-streaming methods: the API has none; the request (an iterator) is not
    # inspected for workspaces, so they are refused when a tokens file is in force.
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(method, handler.stream_unary, gate, streaming_request=True),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream(method, handler.stream_stream, gate, streaming_request=True),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _Unparsed:
    """Stands in for a request protobuf could not parse, so that the call is
    answered INVALID_ARGUMENT by the wrapper below."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Unparsed(str(exc))

    return deserialize


def _check_parsed(request: Any) -> None:
    if isinstance(request, _Unparsed):
        raise unparsable("request", request.error)


def _admit(gate: _Gate, call: _Call, request: Any, context, streaming_request: bool) -> str | None:
    if streaming_request:
        if gate.authority is not None:
            raise PermissionDenied("request", "client-streaming calls are not served with a tokens file")
        return None
    _check_parsed(request)
    return gate.enter(call, request, context)


def _wrap_unary(
    method: str, behavior: Callable[..., Any], gate: _Gate, streaming_request: bool = False
) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(method, gate.metrics)
        slot = None
        try:
            slot = _admit(gate, call, request, context, streaming_request)
            result = behavior(request, context)
            if asyncio.iscoroutine(result):
                result = await result
            return result
        except (grpc.aio.AbortError, asyncio.CancelledError):
            if context.cancelled():
                call.code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:  # noqa: BLE001 - every error must map to a status
            await call.fail(error, context)
        finally:
            gate.leave(slot)
            call.finish(context)

    return wrapped


def _wrap_stream(
    method: str, behavior: Callable[..., Any], gate: _Gate, streaming_request: bool = False
) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call(method, gate.metrics)
        slot = None
        try:
            slot = _admit(gate, call, request, context, streaming_request)
            async for response in behavior(request, context):
                yield response
        except (grpc.aio.AbortError, asyncio.CancelledError):
            if context.cancelled():
                call.code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:  # noqa: BLE001
            await call.fail(error, context)
        finally:
            gate.leave(slot)
            call.finish(context)

    return wrapped


__all__ = ["CallPolicy", "ErrorAndLogInterceptor", "INTERNAL_MESSAGE", "RpcInterceptor", "status_code"]
