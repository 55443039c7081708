"""The interceptor's gate over a real channel: bearer tokens, roles, every workspace
a request names, the per-token cap, TLS and mutual TLS with real certificates."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from server.auth import TokenAuthority, create_token, revoke_token
from server.interceptors import CallPolicy, RpcInterceptor
from server.services.forecast import ForecastServicer
from tests.support.certs import make_certificates
from vectoros.v1 import common_pb2, forecast_pb2, forecast_pb2_grpc, similarity_pb2, similarity_pb2_grpc


class SlowStats(similarity_pb2_grpc.SimilarityServiceServicer):
    """Stands in for the similarity service: the gate runs before any handler, and a
    call that takes a known time makes the per-token cap observable."""

    async def GetStats(self, request, context):
        await asyncio.sleep(0.4)
        return similarity_pb2.GetStatsResponse()

    async def UpsertDeals(self, request, context):
        return similarity_pb2.UpsertDealsResponse()


@pytest.fixture
def tokens(tmp_path):
    path = tmp_path / "tokens.json"
    made = {
        "reader_a": create_token(path, "reader", ["a"])[0],
        "writer_a": create_token(path, "writer", ["a"])[0],
        "writer_b": create_token(path, "writer", ["b"])[0],
        "admin": create_token(path, "admin", [])[0],
    }
    return path, made


@contextlib.asynccontextmanager
async def serving(path, *, cap=0, credentials=None):
    server = grpc.aio.server(interceptors=[RpcInterceptor(CallPolicy(TokenAuthority(path, 0.0), cap))])
    forecast_pb2_grpc.add_ForecastServiceServicer_to_server(ForecastServicer(), server)
    similarity_pb2_grpc.add_SimilarityServiceServicer_to_server(SlowStats(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def forecast_request(*workspaces: str) -> forecast_pb2.ForecastRequest:
    request = forecast_pb2.ForecastRequest(options=forecast_pb2.SimulationOptions(simulations=1000, seed=1))
    request.period.start_time.FromJsonString("2027-01-01T00:00:00Z")
    request.period.end_time.FromJsonString("2027-04-01T00:00:00Z")
    for i, workspace in enumerate(workspaces):
        request.deals.append(common_pb2.Deal(id=f"d{i}", workspace_id=workspace, value=1000.0, probability=0.5))
    return request


async def test_health_is_open_and_the_api_needs_a_token(tokens):
    path, _ = tokens
    async with serving(path) as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stub = forecast_pb2_grpc.ForecastServiceStub(channel)
        for metadata in (None, bearer("vos_nottherighttoken_x")):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.Forecast(forecast_request("a"), metadata=metadata)
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "nottherighttoken" not in error.value.details()


async def test_every_named_workspace_must_be_held(tokens):
    path, made = tokens
    async with serving(path) as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = forecast_pb2_grpc.ForecastServiceStub(channel)
        ok = await stub.Forecast(forecast_request("a", "", "a"), metadata=bearer(made["reader_a"]))
        assert ok.result.mean > 0
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Forecast(forecast_request("a", "b"), metadata=bearer(made["reader_a"]))
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error.value.details() == "deals[1].workspace_id: this token does not hold workspace 'b'"
        status = rpc_status.from_call(error.value)
        assert status is not None and len(status.details) == 1
        assert (await stub.Forecast(forecast_request("a", "b"), metadata=bearer(made["admin"]))).result.mean


async def test_writes_need_a_writer_of_that_workspace(tokens):
    path, made = tokens
    async with serving(path) as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = similarity_pb2_grpc.SimilarityServiceStub(channel)
        request = similarity_pb2.UpsertDealsRequest(workspace_id="a")
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.UpsertDeals(request, metadata=bearer(made["reader_a"]))
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "a reader token may not call UpsertDeals" in error.value.details()
        await stub.UpsertDeals(request, metadata=bearer(made["writer_a"]))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.UpsertDeals(request, metadata=bearer(made["writer_b"]))
        assert error.value.details() == "workspace_id: this token does not hold workspace 'a'"


async def test_one_flooding_token_is_capped_while_another_is_served(tokens):
    path, made = tokens
    async with serving(path, cap=2) as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = similarity_pb2_grpc.SimilarityServiceStub(channel)

        async def stats(token: str, workspace: str):
            try:
                await stub.GetStats(similarity_pb2.GetStatsRequest(workspace_id=workspace), metadata=bearer(token))
                return grpc.StatusCode.OK
            except grpc.aio.AioRpcError as error:
                return error.code()

        flood = [stats(made["writer_a"], "a") for _ in range(6)]
        other = stats(made["writer_b"], "b")
        *flooded, served = await asyncio.gather(*flood, other)
        assert sorted(code.name for code in flooded) == ["OK"] * 2 + ["RESOURCE_EXHAUSTED"] * 4
        assert served == grpc.StatusCode.OK
        # Slots are given back: the same token is served again once its calls ended.
        assert await stats(made["writer_a"], "a") == grpc.StatusCode.OK


async def test_a_revoked_token_is_refused_without_restart(tokens):
    path, made = tokens
    async with serving(path) as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = forecast_pb2_grpc.ForecastServiceStub(channel)
        await stub.Forecast(forecast_request("a"), metadata=bearer(made["reader_a"]))
        revoke_token(path, made["reader_a"].split("_")[1])
        await asyncio.sleep(0.05)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Forecast(forecast_request("a"), metadata=bearer(made["reader_a"]))
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_log_names_caller_workspace_and_request_id_never_the_token(tokens, caplog):
    path, made = tokens
    caplog.set_level(logging.INFO, logger="vectoros.rpc")
    async with serving(path) as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = forecast_pb2_grpc.ForecastServiceStub(channel)
        metadata = (*bearer(made["reader_a"]), ("x-request-id", "req-42"))
        await stub.Forecast(forecast_request("a"), metadata=metadata)
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.Forecast(forecast_request("a"), metadata=bearer(made["reader_a"] + "x"))
    lines = [r for r in caplog.records if r.getMessage() == "rpc"]
    first, second = lines[-2], lines[-1]
    assert (first.request_id, first.caller, first.workspace, first.code) == (
        "req-42", made["reader_a"].split("_")[1], "a", "OK")
    assert second.code == "UNAUTHENTICATED" and len(second.request_id) == 16
    text = "\n".join(str(vars(r)) for r in caplog.records)
    assert made["reader_a"] not in text and made["reader_a"].split("_")[2] not in text


async def test_tls_and_mutual_tls_with_real_certificates(tmp_path, tokens):
    path, made = tokens
    certs = make_certificates(tmp_path / "certs")
    key_pair = [(certs.server_key.read_bytes(), certs.server_cert.read_bytes())]
    request = health_pb2.HealthCheckRequest()

    async def check(port, credentials) -> grpc.StatusCode:
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            try:
                await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
                return grpc.StatusCode.OK
            except grpc.aio.AioRpcError as error:
                return error.code()

    trusting = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
    async with serving(path, credentials=grpc.ssl_server_credentials(key_pair)) as port:
        assert await check(port, trusting) == grpc.StatusCode.OK
        distrusting = grpc.ssl_channel_credentials(certs.other_ca.read_bytes())
        assert await check(port, distrusting) == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(plain).Check(request, timeout=5)

    mutual = grpc.ssl_server_credentials(key_pair, root_certificates=certs.ca.read_bytes(), require_client_auth=True)
    async with serving(path, credentials=mutual) as port:
        assert await check(port, trusting) == grpc.StatusCode.UNAVAILABLE  # no client certificate
        with_cert = grpc.ssl_channel_credentials(
            certs.ca.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes())
        assert await check(port, with_cert) == grpc.StatusCode.OK
        # TLS authenticates the connection; the bearer token still decides what it may do.
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", with_cert) as channel:
            stub = forecast_pb2_grpc.ForecastServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.Forecast(forecast_request("a"))
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert (await stub.Forecast(forecast_request("a"), metadata=bearer(made["reader_a"]))).result.mean
