"""The TypeScript client (clients/typescript): installed from the npm registry
by its lock file (node_modules is kept between runs, reinstalled when the lock
changes), generated from protos/ and compiled with tsc, then run by Node
against the real server: every RPC, errors, a cross-workspace refusal, and
mutual TLS. Its answers are checked against the Python client's."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import json_format
from vectoros_client import Client, rpcs
from vectoros_client.channel import RetryPolicy, service_config
from vectoros_client.v1 import common_pb2, forecast_pb2

from tests.clients.conftest import FOREIGN
from tests.support.serverproc import start_server

ROOT = Path(__file__).resolve().parents[2]
TS = ROOT / "clients" / "typescript"
STAMP = TS / "node_modules" / ".vectoros-lock-sha256"


def _run(*command: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(command, cwd=TS, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def built() -> None:
    """`npm ci` when the lock changed since the last install; generate and compile when an input changed."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.fail("the TypeScript client tests need node (>= 20) and npm on PATH")
    lock = hashlib.sha256((TS / "package-lock.json").read_bytes()).hexdigest()
    if not STAMP.is_file() or STAMP.read_text() != lock:
        _run("npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
        STAMP.write_text(lock)
    # Rebuilt when any input changed: the protos, the sources, the build configuration.
    inputs = sorted([*(ROOT / "protos" / "vectoros").rglob("*.proto"), *(TS / "test").rglob("*.ts"),
                     *(TS / "examples").rglob("*.ts"),
                     *(p for p in (TS / "src").rglob("*.ts") if "gen" not in p.relative_to(TS / "src").parts),
                     *(TS / name for name in ("package.json", "package-lock.json", "tsconfig.json", "buf.gen.yaml"))])
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    built_stamp = TS / "dist" / ".vectoros-build-sha256"
    if built_stamp.is_file() and built_stamp.read_text() == digest.hexdigest():
        return
    shutil.rmtree(TS / "src" / "gen", ignore_errors=True)
    shutil.rmtree(TS / "dist", ignore_errors=True)
    _run("npm", "run", "build")
    built_stamp.write_text(digest.hexdigest())


def interop(env: dict[str, str]) -> dict:
    out = _run("node", "dist/test/interop.js", env={**os.environ, **env}, timeout=120)
    return json.loads(out.strip().splitlines()[-1])


def test_node_calls_every_rpc_against_the_python_server(built, served):
    report = interop({"VECTOROS_ADDRESS": served.address, "VECTOROS_TOKEN": served.writer,
                      "VECTOROS_WORKSPACE": "interop", "VECTOROS_FOREIGN": FOREIGN})
    names = {rpc.name if rpc.name != "GetModelInfo" else f"{rpc.service}.GetModelInfo" for rpc in rpcs.ALL}
    assert set(report["called"]) == names and len(names) == len(rpcs.ALL)
    # The same retry policy as the Python client, RPC for RPC.
    assert report["serviceConfig"] == json.loads(json.dumps(service_config(RetryPolicy())))
    assert report["dimension"] == 384

    # Node's deals and forecast request, read back by Python, give Python the same answers.
    deals = [json_format.ParseDict(deal, common_pb2.Deal()) for deal in report["deals"]]
    request = json_format.ParseDict(report["forecastRequest"], forecast_pb2.ForecastRequest())
    assert request.options.seed == 7 and request.deals[0].expected_close_time.seconds > 0
    with Client(served.address, token=served.writer) as client:
        assert [s.win_probability for s in client.score_deals(deals)] == report["winProbabilities"]
        assert client.call("/vectoros.v1.ForecastService/Forecast", request,
                           forecast_pb2.ForecastResponse).result.mean == report["forecastMean"]
        assert client.get_stats("interop").total_deals == 5

    errors = report["errors"]
    assert errors["invalid"]["code"] == "INVALID_ARGUMENT" and errors["invalid"]["field"] == "deals[0].value"
    served.process.wait_for_log(msg="rpc", request_id=errors["invalid"]["requestId"], code="INVALID_ARGUMENT")
    assert errors["foreign"] == {"code": "PERMISSION_DENIED", "field": "workspace_id", "reason": "PERMISSION_DENIED"}
    assert errors["foreignStream"] == {"code": "PERMISSION_DENIED", "field": "workspace_id"}
    assert errors["unimplemented"]["code"] == "UNIMPLEMENTED"
    assert "does not serve /vectoros.v1.ScoringService/ExplainDeal" in errors["unimplemented"]["message"]
    assert errors["unauthenticated"] == {"code": "UNAUTHENTICATED"}
    assert report["exportedLines"] >= 1


def test_the_readme_example(built, served):
    from tests.clients.test_examples import readme_block

    source = (TS / "examples" / "quickstart.ts").read_text()
    # The README imports the package by name; the example, inside the package, by path.
    assert readme_block("clients/typescript/examples/quickstart.ts") == source.replace('"../src"', '"@vectoros/client"')
    out = _run("node", "dist/examples/quickstart.js", timeout=60,
               env={**os.environ, "VECTOROS_ADDRESS": served.address, "VECTOROS_TOKEN": served.writer})
    assert re.fullmatch(r"win 0\.\d\d, similar: [\w,-]*\n", out), out


def test_node_over_mutual_tls(built, tmp_path):
    from tests.support.certs import make_certificates

    certificates = make_certificates(tmp_path / "certs")
    proc = start_server("--data-dir", str(tmp_path / "data"), "--models", str(tmp_path / "models"),
                        "--tls-cert", str(certificates.server_cert), "--tls-key", str(certificates.server_key),
                        "--tls-client-ca", str(certificates.ca))
    try:
        report = interop({"INTEROP_MODE": "tls", "VECTOROS_ADDRESS": proc.address,
                          "VECTOROS_TLS_CA": str(certificates.ca), "VECTOROS_TLS_CERT": str(certificates.client_cert),
                          "VECTOROS_TLS_KEY": str(certificates.client_key)})
    finally:
        proc.terminate()
    assert report == {"weightedPipeline": 500, "withoutCertificate": "UNAVAILABLE"}


def test_the_lock_file_installs_only_from_the_npm_registry():
    lock = json.loads((TS / "package-lock.json").read_text())
    assert lock["lockfileVersion"] >= 2
    packages = {path: entry for path, entry in lock["packages"].items() if path}
    assert packages, "the lock lists no packages"
    for path, entry in packages.items():
        assert entry.get("integrity", "").startswith("sha512-"), f"{path}: no integrity hash"
        resolved = entry.get("resolved", "https://registry.npmjs.org/")
        assert resolved.startswith("https://registry.npmjs.org/"), f"{path}: resolved from {resolved}"
    assert "registry=https://registry.npmjs.org/" in (TS / ".npmrc").read_text().splitlines()
    manifest = json.loads((TS / "package.json").read_text())
    for name, spec in {**manifest["dependencies"], **manifest["devDependencies"]}.items():
        assert spec[0].isdigit(), f"{name}: {spec!r} is not an exact registry version"
