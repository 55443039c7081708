"""Start the real server (`python -m vectoros serve`) in a subprocess on a free port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServerProcess:
    process: subprocess.Popen
    port: int
    log_lines: list[dict] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def aio_channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address)

    def logs(self, **match) -> list[dict]:
        return [line for line in list(self.log_lines) if all(line.get(k) == v for k, v in match.items())]

    def wait_for_log(self, timeout: float = 30.0, **match) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.logs(**match)
            if found:
                return found[-1]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {match}; last lines: {self.log_lines[-5:]}")

    def terminate(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def start_server(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> ServerProcess:
    """Start `vectoros serve --port 0 ARGS...`; returns once it logged its port."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "vectoros", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict] = []
    raw: list[str] = []
    port_found = threading.Event()

    def drain() -> None:
        for line in process.stderr:
            raw.append(line)
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            lines.append(entry)
            if entry.get("msg") == "listening":
                port_found.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not port_found.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("server did not start:\n" + "".join(raw[-40:]))
    port = next(entry["port"] for entry in lines if entry.get("msg") == "listening")
    return ServerProcess(process=process, port=port, log_lines=lines)
