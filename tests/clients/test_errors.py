"""The server's errors as the client's exceptions: status code, message, the
field the server named (BadRequest or ErrorInfo), and the request id the
server logged the call under."""

from __future__ import annotations

from datetime import datetime

import grpc
import pytest
from vectoros_client import (
    ApiError,
    Client,
    Deal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unimplemented,
)
from vectoros_client.v1 import forecast_pb2, scoring_pb2

from tests.clients.conftest import FOREIGN
from tests.clients.sample import QUARTER

WORKSPACE = "py-errors"


@pytest.fixture(scope="module")
def client(served):
    with Client(served.address, token=served.writer) as made:
        yield made


def test_invalid_argument_keeps_the_field_violations(client, served):
    deals = [Deal(id="ok", value=1.0, probability=0.5), Deal(id="bad", value=-5.0, probability=0.5)]
    with pytest.raises(InvalidArgument) as raised:
        client.forecast(deals, start=QUARTER[0], end=QUARTER[1])
    error = raised.value
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.field == "deals[1].value" and error.violations[0].description.startswith("must be finite")
    assert error.message.startswith("deals[1].value:")
    assert error.status is not None and error.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert isinstance(error.rpc_error, grpc.RpcError)
    # The id the client sent is the one the server logged the call under.
    served.process.wait_for_log(msg="rpc", request_id=error.request_id, code="INVALID_ARGUMENT",
                                method="/vectoros.v1.ForecastService/Forecast")
    assert error.request_id in str(error) and "deals[1].value" in str(error)


def test_another_workspace_is_permission_denied_naming_the_field(client):
    with pytest.raises(PermissionDenied) as raised:
        client.find_similar_deals(FOREIGN, text="anything")
    assert raised.value.field == "workspace_id" and raised.value.reason == "PERMISSION_DENIED"
    assert raised.value.domain == "vectoros" and FOREIGN in raised.value.message
    with pytest.raises(PermissionDenied) as nested:
        client.score_deal(Deal(id="x", workspace_id=FOREIGN, value=1.0))
    assert nested.value.field == "deal.workspace_id"


def test_a_reader_may_not_write(served):
    with Client(served.address, token=served.reader) as reader:
        assert reader.get_stats(WORKSPACE).total_deals >= 0
        with pytest.raises(PermissionDenied) as raised:
            reader.upsert_deals(WORKSPACE, [Deal(id="r1", name="read only")])
    assert raised.value.field == "authorization" and "needs writer" in raised.value.message


@pytest.mark.parametrize("token", [None, "vos_aaaaaaaaaaaa_not-a-real-secret"])
def test_no_token_or_a_wrong_one_is_unauthenticated(served, token):
    with Client(served.address, token=token) as anonymous:
        with pytest.raises(Unauthenticated) as raised:
            anonymous.get_stats(WORKSPACE)
        assert "bearer token" in raised.value.message
        assert anonymous.serving("vectoros.v1.ForecastService")  # health needs no token


def test_not_found(client):
    with pytest.raises(NotFound) as raised:
        client.record_outcome(WORKSPACE, "never-stored", "won", closed_time=datetime(2026, 12, 1).astimezone())
    assert "never-stored" in raised.value.message


def test_a_method_the_server_does_not_serve_is_a_clear_unimplemented(client):
    """What a client built for a newer API sees from an older server."""
    with pytest.raises(Unimplemented) as raised:
        client.call("/vectoros.v1.ScoringService/ExplainDeal", scoring_pb2.ScoreDealRequest(),
                    scoring_pb2.ScoreDealResponse)
    error = raised.value
    assert error.method == "/vectoros.v1.ScoringService/ExplainDeal"
    assert "the server does not serve /vectoros.v1.ScoringService/ExplainDeal" in error.message
    assert "older API than this client" in error.message
    with pytest.raises(Unimplemented):
        client.call("/vectoros.v2.ForecastService/Forecast", forecast_pb2.ForecastRequest(),
                    forecast_pb2.ForecastResponse)
    # Nothing broke: the channel keeps serving.
    assert client.get_stats(WORKSPACE).embedder.name == "embedder"


def test_every_error_is_an_api_error(client):
    with pytest.raises(ApiError):
        client.get_stats("")
