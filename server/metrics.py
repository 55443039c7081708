"""Prometheus metrics: what the server counts and how it is exposed.

One `Metrics` per server process, with its own registry (so tests can build
several). Histograms, not summaries, so that replicas can be aggregated.
The interceptor reports every call (`observe_rpc`); engines report through the
counters below; values that already live elsewhere (queue depth, loaded
model versions, batcher counters) are read when Prometheus scrapes, by
callbacks registered with `add_callback`. `serve_http(host, port)` exposes them on
their own port (the gRPC port carries only gRPC). No gRPC here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("vectoros.metrics")

# 0.5 ms to 30 s: a health Check is ~0.3 ms of server CPU, a large Forecast seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# A callback returns (label values, value) pairs, read at scrape time.
Callback = Callable[[], Iterable[tuple[tuple[str, ...], float]]]
_FAMILIES = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}


class _Callbacks(Collector):
    def __init__(self) -> None:
        self.sources: dict[str, tuple[str, str, tuple[str, ...], Callback]] = {}

    def collect(self):
        for name, (kind, documentation, labels, callback) in list(self.sources.items()):
            family = _FAMILIES[kind](name, documentation, labels=list(labels))
            try:
                for values, value in callback():
                    family.add_metric(list(values), float(value))
            except Exception:  # a scrape must not fail because one source did
                log.exception("metrics callback %s failed", name)
                continue
            yield family


class Metrics:
    """The server's metrics (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vectoros_rpc_requests", "RPCs handled, by method and status code", ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vectoros_rpc_latency_seconds", "RPC latency in the server, by method", ["method"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.llm_calls = Counter(
            "vectoros_llm_calls", "insight generator calls, by generator and outcome", ["generator", "outcome"],
            registry=self.registry,
        )
        self.llm_fallbacks = Counter(
            "vectoros_llm_fallbacks", "insight sets answered by the rules fallback, by reason", ["reason"],
            registry=self.registry,
        )
        self._callbacks = _Callbacks()
        self.registry.register(self._callbacks)
        # (method, code) -> (counter child, histogram child): label lookups cost
        # more than the increment, and a server has a few dozen of them.
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        children = self._children.get((method, code))
        if children is None:
            children = self.requests.labels(method, code), self.latency.labels(method)
            self._children[(method, code)] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)

    def observe_generation(self, requested: str, generator: str, fallback_reason: str | None) -> None:
        """One insight set generated: counted for a generator other than the rules
        (an LLM), with its fallback reason when it fell back."""
        if requested == "rules":
            return
        self.llm_calls.labels(requested, "fallback" if fallback_reason else "ok").inc()
        if fallback_reason:
            self.llm_fallbacks.labels(fallback_label(fallback_reason)).inc()

    def add_callback(self, kind: str, name: str, documentation: str, labels: tuple[str, ...], callback: Callback):
        """A gauge or counter (`kind`) whose values `callback()` gives at scrape time,
        for numbers that already live elsewhere (queue depth, batcher counters)."""
        if kind not in _FAMILIES:
            raise ValueError(f"kind: must be one of {sorted(_FAMILIES)}")
        self._callbacks.sources[name] = (kind, documentation, labels, callback)

    def serve_http(self, host: str, port: int) -> int:
        """Expose /metrics on `host:port` (0 picks a free port); returns the port."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server.server_address[1]


# (words in a generator's fallback reason, its label): labels must stay few.
_FALLBACK_LABELS = (
    ("not calling it for", "cooldown"),
    ("rate limited", "rate_limited"),
    ("did not answer within", "timeout"),
    ("server error", "server_error"),
    ("request refused", "refused"),
    ("cannot reach", "unreachable"),
    ("unreadable answer", "unreadable"),
    ("invalid answer", "invalid_answer"),
)


def fallback_label(reason: str) -> str:
    """A short, bounded label for a generator's fallback reason (the reason itself
    is free text with numbers in it)."""
    lowered = reason.lower()
    for words, label in _FALLBACK_LABELS:
        if words in lowered:
            return label
    return "other"
