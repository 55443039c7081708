"""The server's Prometheus metrics as a scrape sees them: RPC counts and latency,
generator calls and fallbacks by a bounded reason label, callback gauges."""

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.metrics import Metrics, fallback_label


def samples(metrics: Metrics) -> dict:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("the Anthropic API did not answer within 5 s", "timeout"),
        ("rate limited by the Anthropic API (HTTP 429); retry after 30 s", "rate_limited"),
        ("rate limited by the Anthropic API; not calling it for 12.0 s", "cooldown"),
        ("Anthropic API server error (HTTP 529): overloaded", "server_error"),
        ("Anthropic API request refused (HTTP 400): bad model", "refused"),
        ("cannot reach the Anthropic API: connection refused", "unreachable"),
        ("unreadable answer from the Anthropic API: Expecting value", "unreadable"),
        ("invalid answer twice: insights[0].title: required", "invalid_answer"),
        ("something new", "other"),
    ],
)
def test_fallback_reasons_become_few_labels(reason, label):
    assert fallback_label(reason) == label


def test_generations_count_for_llms_only_with_their_fallbacks():
    metrics = Metrics()
    metrics.observe_generation("rules", "rules", None)
    metrics.observe_generation("claude:x", "claude:x", None)
    metrics.observe_generation("claude:x", "rules", "the Anthropic API did not answer within 5 s")
    metrics.observe_generation("claude:x", "rules", "the Anthropic API did not answer within 8 s")
    found = samples(metrics)
    assert found[("vectoros_llm_calls_total", (("generator", "claude:x"), ("outcome", "ok")))] == 1
    assert found[("vectoros_llm_calls_total", (("generator", "claude:x"), ("outcome", "fallback")))] == 2
    assert found[("vectoros_llm_fallbacks_total", (("reason", "timeout"),))] == 2
    assert not any(labels and dict(labels).get("generator") == "rules" for _, labels in found)


def test_rpcs_count_by_method_and_code_with_a_latency_histogram():
    metrics = Metrics()
    for seconds in (0.0002, 0.003, 0.2):
        metrics.observe_rpc("/m", "OK", seconds)
    metrics.observe_rpc("/m", "INVALID_ARGUMENT", 0.001)
    found = samples(metrics)
    assert found[("vectoros_rpc_requests_total", (("code", "OK"), ("method", "/m")))] == 3
    assert found[("vectoros_rpc_latency_seconds_count", (("method", "/m"),))] == 4
    assert found[("vectoros_rpc_latency_seconds_bucket", (("le", "0.0005"), ("method", "/m")))] == 1
    assert found[("vectoros_rpc_latency_seconds_bucket", (("le", "0.005"), ("method", "/m")))] == 3


def test_a_failing_callback_leaves_the_rest_of_the_scrape_intact():
    metrics = Metrics()
    metrics.add_callback("gauge", "vectoros_broken", "raises", (), lambda: 1 / 0)
    metrics.add_callback("counter", "vectoros_fine", "works", ("kind",), lambda: [(("a",), 3)])
    found = samples(metrics)
    assert found[("vectoros_fine_total", (("kind", "a"),))] == 3
    assert not any(name.startswith("vectoros_broken") for name, _ in found)
    with pytest.raises(ValueError, match="kind"):
        metrics.add_callback("summary", "x", "", (), list)
