"""The error-mapping interceptor on an in-process aio server with a fake servicer."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from server.interceptors import INTERNAL_MESSAGE, ErrorAndLogInterceptor
from vectoros.core.errors import InvalidInput, NotFound, Overloaded
from vectoros.v1 import forecast_pb2, forecast_pb2_grpc


class FakeForecast(forecast_pb2_grpc.ForecastServiceServicer):
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    async def Forecast(self, request, context):
        if self.error is not None:
            raise self.error
        return forecast_pb2.ForecastResponse(simulations=1)


async def _call(error: Exception | None):
    server = grpc.aio.server(interceptors=[ErrorAndLogInterceptor()])
    forecast_pb2_grpc.add_ForecastServiceServicer_to_server(FakeForecast(error), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            return await forecast_pb2_grpc.ForecastServiceStub(channel).Forecast(forecast_pb2.ForecastRequest())
    finally:
        await server.stop(None)


@pytest.mark.parametrize(
    "error, code",
    [
        (InvalidInput("deals[3].value", "must be finite and >= 0"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound("model_version: 9 is not loaded"), grpc.StatusCode.NOT_FOUND),
        (Overloaded("queue full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
async def test_project_errors_map_to_their_code(error, code):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _call(error)
    assert raised.value.code() == code
    assert raised.value.details() == error.message


async def test_invalid_input_carries_bad_request_detail():
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _call(InvalidInput("deals[3].value", "must be finite and >= 0"))
    details = dict(raised.value.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "deals[3].value"


async def test_unknown_error_is_internal_with_generic_message_and_logged_traceback(caplog):
    with caplog.at_level(logging.ERROR, logger="vectoros.rpc"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await _call(ZeroDivisionError("secret detail"))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == INTERNAL_MESSAGE
    assert "secret detail" not in raised.value.details()
    assert any(record.exc_info and "ZeroDivisionError" in str(record.exc_info[0]) for record in caplog.records)


async def test_success_passes_through():
    response = await _call(None)
    assert response.simulations == 1


class Alternating(forecast_pb2_grpc.ForecastServiceServicer):
    """Fails every second call, so calls through one cached wrapper differ."""

    def __init__(self) -> None:
        self.calls = 0

    async def Forecast(self, request, context):
        self.calls += 1
        if self.calls % 2 == 0:
            raise InvalidInput("deals[0].value", "must be finite and >= 0")
        return forecast_pb2.ForecastResponse(simulations=self.calls)


async def test_each_call_through_the_once_wrapped_handler_keeps_its_own_outcome(caplog):
    server = grpc.aio.server(interceptors=[ErrorAndLogInterceptor()])
    forecast_pb2_grpc.add_ForecastServiceServicer_to_server(Alternating(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    outcomes = []
    try:
        with caplog.at_level(logging.INFO, logger="vectoros.rpc"):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = forecast_pb2_grpc.ForecastServiceStub(channel)
                for _ in range(4):
                    try:
                        outcomes.append((await stub.Forecast(forecast_pb2.ForecastRequest())).simulations)
                    except grpc.aio.AioRpcError as error:
                        outcomes.append(error.code())
    finally:
        await server.stop(None)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert outcomes == [1, invalid, 3, invalid]
    logged = [record.code for record in caplog.records if getattr(record, "method", "").endswith("/Forecast")]
    assert logged == ["OK", "INVALID_ARGUMENT", "OK", "INVALID_ARGUMENT"]


async def test_a_handler_is_wrapped_once_and_a_new_handler_is_wrapped_again():
    interceptor = ErrorAndLogInterceptor()
    details = SimpleNamespace(method="/vectoros.v1.ForecastService/Forecast", invocation_metadata=())

    async def behavior(request, context):
        return forecast_pb2.ForecastResponse()

    def handler():
        return grpc.unary_unary_rpc_method_handler(behavior)

    first = handler()

    async def continuation_first(_):
        return first

    wrapped = await interceptor.intercept_service(continuation_first, details)
    assert await interceptor.intercept_service(continuation_first, details) is wrapped
    second = handler()

    async def continuation_second(_):
        return second

    rewrapped = await interceptor.intercept_service(continuation_second, details)
    assert rewrapped is not wrapped and rewrapped.unary_unary is not None
