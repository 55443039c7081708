"""`vectoros export`, `quality` and `monitor` over the insight ledger: export read
from the ledger file and streamed from a running server gives the wire's lines,
quality prints one row per generator and scorer version, monitor stores alerts
and does not repeat them within the window.

The servers are the ones the engine and service tests build (their fixtures come
through conftest.py, their helpers are imported here)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from server.interceptors import ErrorAndLogInterceptor
from server.ledger import Ledger
from tests.engines.insight.test_monitor import DAY, deal
from tests.services.test_insight_service import as_open, export, on_session_loop, shifted, upsert
from training.synth import synth_deals
from vectoros.cli import ledger as ledger_cli
from vectoros.core.deal_codec.proto import time_to_proto
from vectoros.core.deals import Outcome
from vectoros.v1 import common_pb2, insight_pb2, insight_pb2_grpc


@pytest.fixture(scope="module")
async def seeded(running) -> None:
    """What the running server's ledger holds after a day of use: an insight set for
    an open deal, rated helpful, and the deal's outcome."""
    now = datetime.now(UTC)
    records = [shifted(r, now - timedelta(days=1)) for r in synth_deals(80, seed=31)]
    await upsert(running, "acme", records)
    target = next(r for r in records if r.outcome is Outcome.OPEN)
    response = await running.stub.GenerateInsights(insight_pb2.GenerateInsightsRequest(deal=as_open(target, "acme")))
    await running.stub.RecordFeedback(insight_pb2.RecordFeedbackRequest(
        workspace_id="acme", insight_set_id=response.insight_set_id, insight_id=response.insights[0].id,
        rating=insight_pb2.FEEDBACK_RATING_HELPFUL, acted_on=True, idempotency_key="fb-1",
    ))
    await running.stub.RecordOutcome(insight_pb2.RecordOutcomeRequest(
        workspace_id="acme", deal_id=target.deal_id, outcome=common_pb2.DEAL_OUTCOME_WON,
        closed_time=time_to_proto(now + timedelta(days=2)), final_value=12_345.0,
    ))


@pytest.mark.slow  # serves a trained scorer
@on_session_loop
async def test_export_and_quality_command_lines(running, seeded, tmp_path):
    parser = argparse.ArgumentParser()
    ledger_cli.add_parser(parser.add_subparsers())
    data_dir = running.insight.engine.ledger.path.parent
    port = running.port

    def run(*argv: str) -> tuple[int, str]:
        args = parser.parse_args(argv)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = args.func(args)
        return code, out.getvalue()

    for name, wire in (("labelled", insight_pb2.EXPORT_FORMAT_LABELLED_EXAMPLES),
                       ("scorer", insight_pb2.EXPORT_FORMAT_SCORER_ROWS)):
        expected = await export(running.stub, "acme", wire)
        assert expected  # the seeded ledger has rows of both formats
        code, local = await asyncio.to_thread(run, "export", "--workspace", "acme", "--format", name,
                                              "--data-dir", str(data_dir))
        assert code == 0 and local.splitlines() == expected
        code, remote = await asyncio.to_thread(run, "export", "--workspace", "acme", "--format", name,
                                               "--server", f"127.0.0.1:{port}")
        assert code == 0 and remote.splitlines() == expected
    code, table = await asyncio.to_thread(run, "quality", "--data-dir", str(data_dir), "--workspace", "acme")
    rows = running.insight.engine.ledger.quality("acme")
    assert code == 0 and len(table.splitlines()) == 1 + len(rows) and "brier" in table.splitlines()[0]
    code, listed = await asyncio.to_thread(run, "quality", "--data-dir", str(data_dir), "--json")
    assert code == 0 and {r["generator"] for r in json.loads(listed)} == {r.generator for r in rows}
    assert (await asyncio.to_thread(run, "quality", "--data-dir", str(tmp_path / "none")))[0] == 2


async def test_monitor_cli_stores_alerts_and_does_not_repeat_them(monitor_parts, tmp_path):
    from server.engines.insight import InsightEngine
    from server.engines.insight.rules import RulesGenerator
    from server.services.insight import InsightServicer

    monitor, similarity, ledger = monitor_parts
    now = datetime.now(UTC)
    quiet = [deal(f"q{i}", workspace_id="", last_activity_at=now - 40 * DAY, created_at=now - 90 * DAY,
                  stage_entered_at=now - DAY, expected_close_at=now + 9 * DAY) for i in range(3)]
    await similarity.upsert("acme", quiet)
    engine = InsightEngine(monitor.registry, similarity, ledger, RulesGenerator(), monitor.history)
    server = grpc.aio.server(interceptors=[ErrorAndLogInterceptor()])
    insight_pb2_grpc.add_InsightServiceServicer_to_server(InsightServicer(engine, monitor), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    parser = argparse.ArgumentParser()
    ledger_cli.add_parser(parser.add_subparsers())
    cli_dir = tmp_path / "cli"

    def run(*extra: str) -> list[dict]:
        out = cli_dir / "alerts.jsonl"
        before = out.read_text().splitlines() if out.exists() else []
        args = parser.parse_args(["monitor", "--server", f"127.0.0.1:{port}", "--workspace", "acme",
                                  "--data-dir", str(cli_dir), "--out", str(out), "--once", *extra])
        assert args.func(args) == 0
        return [json.loads(line) for line in out.read_text().splitlines()[len(before):]]

    try:
        first = await asyncio.to_thread(run)
        assert {a["deal_id"] for a in first if a["rule"] == "stale_deal"} == {"q0", "q1", "q2"}
        assert all(a["priority"] in ("critical", "high", "medium", "low") for a in first)
        assert await asyncio.to_thread(run) == []  # same conditions within the window
        assert len(await asyncio.to_thread(run, "--window", "0s")) == len(first)
        stored = Ledger.in_dir(cli_dir)
        assert {a.dedup_key for a in stored.alerts("acme")} == {a["dedup_key"] for a in first}
        stored.close()
        # A server that is not there: reported, exit 1.
        bad = parser.parse_args(["monitor", "--server", "127.0.0.1:1", "--workspace", "acme", "--data-dir",
                                 str(cli_dir), "--once", "--timeout", "2"])
        errors = io.StringIO()
        assert await asyncio.to_thread(_with_stderr, errors, bad.func, bad) == 1
        assert "scan of 'acme' failed: UNAVAILABLE" in errors.getvalue()
    finally:
        await server.stop(None)


def _with_stderr(buffer, func, args):
    import contextlib

    with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(io.StringIO()):
        return func(args)


def test_durations():
    assert ledger_cli.parse_duration("30m") == 1800
    assert ledger_cli.parse_duration("1h30m") == 5400
    assert ledger_cli.parse_duration("45") == 45
    with pytest.raises(argparse.ArgumentTypeError):
        ledger_cli.parse_duration("30 minutes")
