"""How the client connects, against real server processes: TLS and mutual TLS
with real certificates, retries by the service config (counted in the
server's own log), wait_for_ready, and the options it refuses."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from vectoros_client import (
    TLS,
    Client,
    DeadlineExceeded,
    Deal,
    RetryPolicy,
    SimulationOptions,
    Unavailable,
    rpcs,
)
from vectoros_client.channel import ChannelSettings, service_config
from vectoros_client.v1 import embedding_pb2, forecast_pb2, insight_pb2, scoring_pb2, similarity_pb2

from tests.clients.sample import QUARTER, open_pipeline
from tests.support.certs import make_certificates
from tests.support.serverproc import start_server

SCORE = "/vectoros.v1.ScoringService/ScoreDeal"
INSIGHTS = "/vectoros.v1.InsightService/GenerateInsights"


def forecast_once(client: Client) -> float:
    deals = open_pipeline("tls", 3)
    options = SimulationOptions(seed=1, simulations=1_000)
    return client.forecast(deals, start=QUARTER[0], end=QUARTER[1], options=options).result.weighted_pipeline


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("client-certs"))


@pytest.fixture(scope="module")
def tls_server(certificates, tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    proc = start_server("--data-dir", str(root / "data"), "--models", str(root / "models"),
                        "--tls-cert", str(certificates.server_cert), "--tls-key", str(certificates.server_key))
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def mtls_server(certificates, tmp_path_factory):
    root = tmp_path_factory.mktemp("mtls")
    proc = start_server("--data-dir", str(root / "data"), "--models", str(root / "models"),
                        "--tls-cert", str(certificates.server_cert), "--tls-key", str(certificates.server_key),
                        "--tls-client-ca", str(certificates.ca))
    yield proc
    proc.terminate()


def test_tls_with_the_servers_ca(tls_server, certificates):
    expected = sum(d.value * d.probability for d in open_pipeline("tls", 3))
    with Client(tls_server.address, tls=TLS(root_certificates=certificates.ca)) as client:
        assert forecast_once(client) == pytest.approx(expected)
    pem_text = certificates.ca.read_text()
    with Client(f"localhost:{tls_server.port}", tls=TLS(root_certificates=pem_text)) as by_name:
        assert forecast_once(by_name) == pytest.approx(expected)


@pytest.mark.parametrize("how", ["plaintext", "untrusted ca"])
def test_tls_refuses_what_it_cannot_verify(tls_server, certificates, how):
    tls = None if how == "plaintext" else TLS(root_certificates=certificates.other_ca)
    with Client(tls_server.address, tls=tls, timeout=3, wait_for_ready=False) as client:
        with pytest.raises(Unavailable):
            forecast_once(client)


def test_mutual_tls_needs_the_client_certificate(mtls_server, certificates):
    mutual = TLS(root_certificates=certificates.ca, certificate_chain=certificates.client_cert,
                 private_key=certificates.client_key)
    with Client(mtls_server.address, tls=mutual) as client:
        assert forecast_once(client) > 0
    with Client(mtls_server.address, tls=TLS(root_certificates=certificates.ca), timeout=3,
                wait_for_ready=False) as anonymous:
        with pytest.raises(Unavailable):
            forecast_once(anonymous)


@pytest.fixture(scope="module")
def modelless_server(tmp_path_factory):
    """No models: ScoringService and InsightService answer UNAVAILABLE."""
    root = tmp_path_factory.mktemp("no-models")
    proc = start_server("--data-dir", str(root / "data"), "--models", str(root / "models"))
    yield proc
    proc.terminate()


def attempts(proc, request_id: str, method: str, expected: int) -> int:
    """How many attempts of one call the server logged. Every attempt ended before
    the client saw the last one fail; their log lines may still be in the pipe."""
    deadline = time.monotonic() + 10
    while len(proc.logs(msg="rpc", request_id=request_id, method=method)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # an attempt too many would show by now
    return len(proc.logs(msg="rpc", request_id=request_id, method=method))


def test_idempotent_calls_are_retried_by_grpc_not_by_a_loop(modelless_server):
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.1)
    with Client(modelless_server.address, retry=policy) as client:
        with pytest.raises(Unavailable) as scored:
            client.score_deal(Deal(id="d", value=1.0))
        # One client call, three attempts on the server, one request id: the channel retried.
        assert attempts(modelless_server, scored.value.request_id, SCORE, 3) == 3
        with pytest.raises(Unavailable) as generated:
            client.generate_insights(Deal(id="d", workspace_id="w"))
        assert attempts(modelless_server, generated.value.request_id, INSIGHTS, 1) == 1  # not idempotent
    with Client(modelless_server.address, retry=None) as no_retries:
        with pytest.raises(Unavailable) as once:
            no_retries.score_deal(Deal(id="d", value=1.0))
        assert attempts(modelless_server, once.value.request_id, SCORE, 1) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_wait_for_ready_waits_for_a_server_that_is_not_up_yet(tmp_path):
    port = free_port()
    outcome: dict[str, object] = {}

    def call() -> None:
        with Client(f"127.0.0.1:{port}", timeout=60) as client:
            try:
                outcome["weighted"] = forecast_once(client)
            except Exception as error:  # noqa: BLE001 - reported below
                outcome["error"] = error

    caller = threading.Thread(target=call)
    caller.start()
    proc = start_server("--port", str(port), "--data-dir", str(tmp_path / "data"), "--models", str(tmp_path / "m"))
    try:
        caller.join(60)
    finally:
        proc.terminate()
    assert "error" not in outcome, outcome
    assert outcome["weighted"] > 0


def test_without_wait_for_ready_a_missing_server_fails_at_once():
    with Client(f"127.0.0.1:{free_port()}", wait_for_ready=False, timeout=20) as hasty:
        with pytest.raises(Unavailable):
            forecast_once(hasty)
    with Client(f"127.0.0.1:{free_port()}", timeout=0.5) as patient:
        with pytest.raises(DeadlineExceeded):
            forecast_once(patient)


def test_the_service_config_retries_exactly_the_idempotent_rpcs():
    services = [embedding_pb2, similarity_pb2, scoring_pb2, forecast_pb2, insight_pb2]
    in_protos = {f"/{s.full_name}/{m.name}" for module in services
                 for s in module.DESCRIPTOR.services_by_name.values() for m in s.methods}
    assert {rpc.path for rpc in rpcs.ALL} == in_protos  # a new RPC must say whether it may be retried
    config = json.loads(dict(ChannelSettings("127.0.0.1:1").options())["grpc.service_config"])
    assert config == service_config(RetryPolicy())
    (method_config,) = config["methodConfig"]
    retried = {f"/{n['service']}/{n['method']}" for n in method_config["name"]}
    assert retried == in_protos - {INSIGHTS}
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]


@pytest.mark.parametrize(
    "options, text",
    [
        ({"token": "vos_x_y"}, "token: refusing to send a bearer token without TLS to '10.0.0.7:50051'"),
        ({"token": "two words"}, "token: must be a non-empty string without spaces"),
        ({"keepalive_seconds": 5}, "keepalive_seconds: must be >= 10"),
        ({"timeout": 0}, "timeout: must be a number of seconds > 0"),
        ({"stream_timeout": float("inf")}, "stream_timeout: must be a number of seconds > 0"),
        ({"max_message_mb": 0}, "max_message_mb: must be a whole number >= 1"),
        ({"tls": TLS(root_certificates="/no/such/ca.pem")}, "tls.root_certificates: cannot read '/no/such/ca.pem'"),
    ],
)
def test_options_it_refuses(options, text):
    with pytest.raises(ValueError) as raised:
        Client("10.0.0.7:50051", **options)
    assert text in str(raised.value)


@pytest.mark.parametrize(
    "make, text",
    [
        (lambda: RetryPolicy(max_attempts=9), "retry.max_attempts: must be 2 to 5"),
        (lambda: RetryPolicy(retryable_codes=("SOMETIMES",)), "retry.retryable_codes: must be gRPC status code"),
        (lambda: TLS(certificate_chain=b"pem"), "tls: give certificate_chain and private_key together"),
    ],
)
def test_policies_it_refuses(make, text):
    with pytest.raises(ValueError, match=text.replace(".", r"\.")):
        make()


def test_a_token_goes_in_plaintext_only_to_loopback_or_when_allowed():
    for target in ("127.0.0.1:50051", "localhost:50051", "[::1]:50051", "dns:///localhost:50051"):
        Client(target, token="vos_x_y").close()
    Client("10.0.0.7:50051", token="vos_x_y", allow_plaintext_token=True).close()
    Client("10.0.0.7:50051", token="vos_x_y", tls=True).close()
    with pytest.raises(TypeError):
        Client("127.0.0.1:50051", tls="yes")


def test_both_clients_take_the_same_options_with_the_same_defaults():
    import inspect

    from vectoros_client import AsyncClient
    from vectoros_client.base import ClientOptions

    expected = [(p.name, p.kind, p.default) for p in inspect.signature(ClientOptions).parameters.values()]
    for kind in (Client, AsyncClient):
        assert [(p.name, p.kind, p.default) for p in inspect.signature(kind).parameters.values()] == expected
