"""`vectoros tokens create|list|revoke` on a real tokens file, and a real server
that takes the printed token and refuses it once revoked."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import grpc
import pytest

from server.auth import TokenAuthority, read_tokens
from tests.support.serverproc import ROOT, start_server
from vectoros.cli import main
from vectoros.v1 import common_pb2, forecast_pb2, forecast_pb2_grpc


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_prints_the_token_once_and_stores_its_hash(tmp_path, capsys):
    path = tmp_path / "tokens.json"
    code, out, err = run(capsys, "tokens", "create", "--role", "writer", "--workspace", "acme", "--workspace", "beta",
                         "--name", "crm", "--tokens", str(path))
    token = out.strip()
    assert code == 0 and token.startswith("vos_") and out.count("\n") == 1
    assert "shown only now" in err and token not in err
    assert token not in path.read_text()
    principal = TokenAuthority(path).authenticate(f"Bearer {token}")
    assert principal.workspaces == {"acme", "beta"} and principal.name == "crm"


def test_list_and_revoke(tmp_path, capsys):
    path = tmp_path / "tokens.json"
    run(capsys, "tokens", "create", "--role", "reader", "--workspace", "acme", "--tokens", str(path))
    run(capsys, "tokens", "create", "--role", "admin", "--tokens", str(path))
    first, admin = read_tokens(path)
    code, out, _ = run(capsys, "tokens", "list", "--json", "--tokens", str(path))
    listed = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [t["id"] for t in listed] == [first.id, admin.id]
    assert all("sha256" not in t for t in listed) and listed[1]["workspaces"] == []
    code, out, _ = run(capsys, "tokens", "list", "--tokens", str(path))
    assert code == 0 and first.id in out and "(all)" in out
    assert run(capsys, "tokens", "revoke", first.id, "--tokens", str(path))[0] == 0
    assert read_tokens(path)[0].revoked_at is not None
    code, _, err = run(capsys, "tokens", "revoke", "nosuchid", "--tokens", str(path))
    assert code == 2 and "no token 'nosuchid'" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [(("--role", "writer"), "needs at least one workspace"),
     (("--role", "reader", "--workspace", "x" * 200), "at most 128 bytes")],
)
def test_create_refuses_what_the_server_would(tmp_path, capsys, args, message):
    code, out, err = run(capsys, "tokens", "create", *args, "--tokens", str(tmp_path / "t.json"))
    assert code == 2 and out == "" and message in err


def test_a_running_server_takes_a_new_token_and_refuses_it_once_revoked(tmp_path):
    path = tmp_path / "tokens.json"

    def vectoros(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "vectoros", *args], cwd=ROOT, capture_output=True, text=True,
                                check=True, timeout=60)
        return result.stdout.strip()

    vectoros("tokens", "create", "--role", "reader", "--workspace", "ops", "--tokens", str(path))
    server = start_server("--data-dir", str(tmp_path / "data"), "--models", str(tmp_path / "models"),
                          "--tokens-file", str(path))
    try:
        token = vectoros("tokens", "create", "--role", "reader", "--workspace", "acme", "--tokens", str(path))
        request = forecast_pb2.ForecastRequest(options=forecast_pb2.SimulationOptions(simulations=100, seed=1))
        request.period.start_time.FromJsonString("2027-01-01T00:00:00Z")
        request.period.end_time.FromJsonString("2027-04-01T00:00:00Z")
        request.deals.append(common_pb2.Deal(id="d", workspace_id="acme", value=10.0, probability=0.5))
        metadata = (("authorization", f"Bearer {token}"),)
        with server.channel() as channel:
            stub = forecast_pb2_grpc.ForecastServiceStub(channel)
            deadline = time.monotonic() + 10
            while True:  # the server re-reads the file within a second
                try:
                    stub.Forecast(request, metadata=metadata, timeout=10)
                    break
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and time.monotonic() < deadline
                    time.sleep(0.2)
            vectoros("tokens", "revoke", token.split("_")[1], "--tokens", str(path))
            deadline = time.monotonic() + 10
            while True:
                try:
                    stub.Forecast(request, metadata=metadata, timeout=10)
                    assert time.monotonic() < deadline, "the revoked token was still accepted"
                    time.sleep(0.2)
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
                    break
    finally:
        assert server.terminate() == 0
    assert server.logs(msg="listening")[0]["authentication"] is True
