"""A stand-in for the Anthropic Messages API: a real HTTP server on 127.0.0.1 that
answers ``POST /v1/messages`` from a script, so tests drive the real `anthropic`
SDK (pointed at it with ``base_url`` or ``ANTHROPIC_BASE_URL``).

Each request takes the next scripted reply (or the default one when the script
is empty). A reply is a `Reply` or a function of the request body returning
one, so a reply can be built from the context the client actually sent.
Requests are recorded (headers and parsed JSON body) for assertions.

    with FakeAnthropic() as api:
        api.script(tool_reply({...}), status_reply(429, retry_after=7))
        client = anthropic.AsyncAnthropic(api_key="test", base_url=api.url)
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ids = itertools.count(1)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a slow or hung API)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def message(content: list[dict[str, Any]], *, stop_reason: str = "tool_use", input_tokens: int = 1200,
            output_tokens: int = 300, model: str = "claude-sonnet-4-6") -> dict[str, Any]:
    return {
        "id": f"msg_{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def tool_reply(tool_input: Any, *, name: str = "record_insights", input_tokens: int = 1200,
               output_tokens: int = 300, delay: float = 0.0) -> Reply:
    block = {"type": "tool_use", "id": f"toolu_{next(_ids):06d}", "name": name, "input": tool_input}
    body = message([block], input_tokens=input_tokens, output_tokens=output_tokens)
    return Reply(200, json.dumps(body).encode(), {"content-type": "application/json"}, delay)


def text_reply(text: str, *, stop_reason: str = "end_turn") -> Reply:
    body = message([{"type": "text", "text": text}], stop_reason=stop_reason)
    return Reply(200, json.dumps(body).encode(), {"content-type": "application/json"})


def status_reply(status: int, *, error_type: str | None = None, retry_after: float | None = None,
                 delay: float = 0.0) -> Reply:
    kinds = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error", 400: "invalid_request_error"}
    body = {"type": "error", "error": {"type": error_type or kinds.get(status, "api_error"),
                                       "message": f"scripted {status}"}}
    headers = {"content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    return Reply(status, json.dumps(body).encode(), headers, delay)


def raw_reply(body: bytes, status: int = 200, content_type: str = "application/json") -> Reply:
    return Reply(status, body, {"content-type": content_type})


def deal_context(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON data block of the first user message of a recorded request."""
    text = user_text(body)
    match = re.search(r"<deal_context>\n(.*)\n</deal_context>", text, re.S)
    assert match, "no <deal_context> block in the user message"
    return json.loads(match.group(1))


def user_text(body: dict[str, Any]) -> str:
    content = body["messages"][0]["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if block.get("type") == "text")


Script = Reply | Callable[[dict[str, Any]], Reply]


class FakeAnthropic:
    """The stand-in server; a context manager (starts on enter, stops on exit)."""

    def __init__(self, default: Script | None = None) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Script] = deque()
        self._default = default or status_reply(500, error_type="api_error")
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = {"unparsed": raw.decode("utf-8", "replace")}
                with fake._lock:
                    fake.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    step = fake._script.popleft() if fake._script else fake._default
                reply = step(body) if callable(step) else step
                if self.path.split("?")[0] != "/v1/messages":
                    reply = status_reply(404, error_type="not_found_error")
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("request-id", f"req_{next(_ids):06d}")
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-anthropic", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *steps: Script) -> None:
        with self._lock:
            self._script.extend(steps)

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
