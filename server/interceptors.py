"""Cross-cutting concerns for every RPC: error mapping and the request log.

One interceptor wraps every handler. Project exceptions (`vectoros.core.errors`)
become the gRPC status their code name names, with their message; `InvalidInput` also carries a
`google.rpc.BadRequest` detail naming the field. Anything else becomes
INTERNAL with a generic message, and the traceback goes to the log only.
A request protobuf cannot parse (a string field that is not UTF-8, truncated
bytes) is INVALID_ARGUMENT on the field `request`, not gRPC's UNKNOWN.
Each call writes one log line with method, code and latency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from vectoros.core.errors import InvalidInput, VectorOSError, unparsable

log = logging.getLogger("vectoros.rpc")

INTERNAL_MESSAGE = "internal error; see the server log"


def status_code(error: VectorOSError) -> grpc.StatusCode:
    """The gRPC status for a project error's code name (the one place they meet)."""
    return grpc.StatusCode[error.code]


def _status_for(error: VectorOSError) -> grpc.Status:
    detail = status_pb2.Status(code=status_code(error).value[0], message=error.message)
    if isinstance(error, InvalidInput):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.rule)]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        detail.details.append(packed)
    return rpc_status.to_status(detail)


class _Call:
    """Tracks one call's outcome for the log line."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK

    async def fail(self, error: BaseException, context: grpc.aio.ServicerContext) -> None:
        """Record the error's code and abort the call with it (raises)."""
        if isinstance(error, VectorOSError):
            self.code = status_code(error)
            await context.abort_with_status(_status_for(error))
        self.code = grpc.StatusCode.INTERNAL
        log.error("unhandled error in %s", self.method, exc_info=error, extra={"method": self.method})
        await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    def finish(self, context: grpc.aio.ServicerContext) -> None:
        if self.code is grpc.StatusCode.OK:
            code = context.code()
            if code is not None and code != grpc.StatusCode.OK:
                self.code = code if isinstance(code, grpc.StatusCode) else _code_from_int(code)
        latency_ms = (time.perf_counter() - self.started) * 1000
        level = logging.ERROR if self.code is grpc.StatusCode.INTERNAL else logging.INFO
        log.log(level, "rpc", extra={"method": self.method, "code": self.code.name, "latency_ms": round(latency_ms, 3)})


def _code_from_int(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


class ErrorAndLogInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
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
        wrapped = _wrap_handler(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _wrap_handler(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(method, handler.unary_unary),
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(method, handler.unary_stream),
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(method, handler.stream_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream(method, handler.stream_stream),
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


def _wrap_unary(method: str, behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(method)
        try:
            _check_parsed(request)
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
            call.finish(context)

    return wrapped


def _wrap_stream(method: str, behavior: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call(method)
        try:
            _check_parsed(request)
            async for response in behavior(request, context):
                yield response
        except (grpc.aio.AbortError, asyncio.CancelledError):
            if context.cancelled():
                call.code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:  # noqa: BLE001
            await call.fail(error, context)
        finally:
            call.finish(context)

    return wrapped


__all__ = ["ErrorAndLogInterceptor", "INTERNAL_MESSAGE"]
