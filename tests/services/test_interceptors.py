"""The error-mapping interceptor on an in-process aio server with a fake servicer."""

from __future__ import annotations

import logging

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from server.errors import InvalidInput, NotFound, Overloaded
from server.interceptors import INTERNAL_MESSAGE, ErrorAndLogInterceptor
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
