"""Command line for the insight ledger, wired into `vectoros` by `add_parser`:

    vectoros export --workspace W --format labelled|chat|scorer [--out FILE] [--since TIME]
                    (--data-dir DIR | --server HOST:PORT)
    vectoros monitor --server HOST:PORT --workspace W [--workspace W2 ...]
                     [--every 30m] [--window 24h] [--data-dir DIR] [--out FILE] [--once]
    vectoros quality [--data-dir DIR] [--workspace W] [--json]

`export` writes JSON Lines: labelled examples (deal snapshot, generated
insights, feedback, outcome), chat fine-tuning records, or scorer training rows
in the documented deal-record schema (docs/deal-records.md), which
`vectoros train scorer --data FILE` reads. It reads the ledger file under
``--data-dir`` directly (SQLite in WAL mode allows it while the server runs) or
streams `ExportTrainingData` from a running server with ``--server``.

`monitor` calls `ScanPipeline` for each workspace every ``--every``, stores the
alerts in the ledger under ``--data-dir`` (the server's own data dir works: the
ledger is shared safely) and prints each alert as a JSON line, except an alert
whose dedup key was already printed within ``--window``.

`quality` prints, per generator and scorer version, the helpful rate, the
action rate and the Brier score of the win probabilities shown against the
recorded outcomes.

Exit codes: 0 done, 1 a scan or the export failed, 2 invalid arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

FORMATS = {"labelled": "labelled_examples", "chat": "chat_finetune", "scorer": "scorer_rows"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> float:
    """Seconds in "90s", "30m", "1h30m", "2d" or a plain number of seconds."""
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(a + u for a, u in parts) != text:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 30m, 1h30m)")
    return sum(float(amount) * _UNITS[unit] for amount, unit in parts)


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return seconds


def _time(text: str) -> datetime:
    from training.records import parse_time

    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or os.environ.get("VECTOROS_DATA_DIR", "./data"))


def _open_ledger(data_dir: Path, *, create: bool):
    from server.ledger import LEDGER_FILE, Ledger

    path = data_dir / LEDGER_FILE
    if not create and not path.is_file():
        print(f"error: no ledger at {path}", file=sys.stderr)
        return None
    return Ledger(path)


# --- export ------------------------------------------------------------------------------


def export_command(args: argparse.Namespace) -> int:
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115 - closed below
    count = 0
    try:
        if args.server:
            lines = _export_remote(args)
        else:
            ledger = _open_ledger(_data_dir(args), create=False)
            if ledger is None:
                return 2
            lines = _export_local(ledger, args)
        for line in lines:
            out.write(line + "\n")
            count += 1
    except _Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if out is not sys.stdout:
            out.close()
    if args.out:
        print(f"wrote {count} {args.format} records to {args.out}", file=sys.stderr)
    return 0


class _Failed(Exception):
    pass


def _export_local(ledger, args: argparse.Namespace):
    from server.engines.insight import ExportFormat, export_lines

    try:
        yield from export_lines(ledger, args.workspace, ExportFormat(FORMATS[args.format]), args.since)
    finally:
        ledger.close()


def _export_remote(args: argparse.Namespace):
    import grpc

    from vectoros.core.deal_codec.proto import time_to_proto
    from vectoros.v1 import insight_pb2, insight_pb2_grpc

    formats = {
        "labelled": insight_pb2.EXPORT_FORMAT_LABELLED_EXAMPLES,
        "chat": insight_pb2.EXPORT_FORMAT_CHAT_FINETUNE,
        "scorer": insight_pb2.EXPORT_FORMAT_SCORER_ROWS,
    }
    request = insight_pb2.ExportTrainingDataRequest(workspace_id=args.workspace, format=formats[args.format])
    if args.since is not None:
        request.since_time.CopyFrom(time_to_proto(args.since))
    with grpc.insecure_channel(args.server) as channel:
        stub = insight_pb2_grpc.InsightServiceStub(channel)
        try:
            for chunk in stub.ExportTrainingData(request, timeout=args.timeout):
                yield from chunk.lines
        except grpc.RpcError as exc:
            raise _Failed(f"{args.server}: {exc.code().name}: {exc.details()}") from None


# --- monitor -----------------------------------------------------------------------------


def monitor_command(args: argparse.Namespace) -> int:
    import grpc

    from vectoros.v1 import insight_pb2_grpc

    ledger = _open_ledger(_data_dir(args), create=True)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    out = open(args.out, "a", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115 - closed below
    failed = False
    try:
        with grpc.insecure_channel(args.server) as channel:
            stub = insight_pb2_grpc.InsightServiceStub(channel)
            while not stop.is_set():
                failed = not monitor_round(stub, ledger, args.workspace, args.window, out, args.timeout)
                if args.once:
                    break
                stop.wait(args.every)
    finally:
        ledger.close()
        if out is not sys.stdout:
            out.close()
    return 1 if failed and args.once else 0


def monitor_round(stub, ledger, workspaces, window_seconds: float, out, timeout: float = 120.0) -> bool:
    """One scan of each workspace: store the alerts, print those not printed within
    the window. Returns False if a scan failed (it is reported and the next round
    tries again)."""
    import grpc

    from server.ledger import AlertRow
    from vectoros.v1 import insight_pb2

    priorities = {value: name.removeprefix("ALERT_PRIORITY_").lower()
                  for name, value in insight_pb2.AlertPriority.items()}
    ok = True
    for workspace in workspaces:
        now = datetime.now(UTC)
        try:
            response = stub.ScanPipeline(insight_pb2.ScanPipelineRequest(workspace_id=workspace), timeout=timeout)
        except grpc.RpcError as exc:
            print(f"error: scan of {workspace!r} failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
            ok = False
            continue
        rows = [
            AlertRow(a.dedup_key, a.deal_id, a.rule, priorities.get(a.priority, "unspecified"), a.title,
                     a.description, dict(a.evidence), now, now, None)
            for a in response.alerts
        ]
        ledger.record_alerts(workspace, rows)
        fresh = set(ledger.claim_notifications(workspace, [r.dedup_key for r in rows], window_seconds, now))
        for row in rows:
            if row.dedup_key in fresh:
                out.write(json.dumps({
                    "time": now.isoformat().replace("+00:00", "Z"),
                    "workspace_id": workspace,
                    "dedup_key": row.dedup_key,
                    "deal_id": row.deal_id,
                    "rule": row.rule,
                    "priority": row.priority,
                    "title": row.title,
                    "description": row.description,
                    "evidence": row.evidence,
                }, ensure_ascii=False) + "\n")
        out.flush()
        print(f"{workspace}: {response.scanned_deals} open deals, {len(rows)} alerts, {len(fresh)} new",
              file=sys.stderr)
    return ok


# --- quality -----------------------------------------------------------------------------


def quality_command(args: argparse.Namespace) -> int:
    ledger = _open_ledger(_data_dir(args), create=False)
    if ledger is None:
        return 2
    try:
        rows = ledger.quality(args.workspace)
    finally:
        ledger.close()
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=1))
        return 0
    header = f"{'generator':<32} {'scorer':>6} {'sets':>7} {'feedback':>8} {'helpful':>8} {'acted':>7} " \
             f"{'outcomes':>8} {'brier':>7}"
    print(header)

    def share(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    for row in rows:
        brier = "-" if row.brier is None else f"{row.brier:.4f}"
        print(f"{row.generator:<32} {'v' + str(row.scorer_version):>6} {row.insight_sets:>7} {row.feedback:>8} "
              f"{share(row.helpful_rate):>8} {share(row.action_rate):>7} {row.outcomes:>8} {brier:>7}")
    return 0


# --- the parser --------------------------------------------------------------------------


def add_parser(subparsers) -> None:
    """Add `export`, `monitor` and `quality` to the `vectoros` subparsers."""
    data_help = "the server's --data-dir, holding ledger.sqlite (env VECTOROS_DATA_DIR; default ./data)"

    export = subparsers.add_parser("export", help="write training data from the insight ledger as JSON Lines")
    export.add_argument("--workspace", required=True)
    export.add_argument("--format", choices=sorted(FORMATS), required=True,
                        help="labelled examples, chat fine-tuning records, or scorer training rows")
    export.add_argument("--out", type=Path, default=None, help="output file (default stdout)")
    export.add_argument("--since", type=_time, default=None, help="only insight sets created at or after this time")
    source = export.add_mutually_exclusive_group()
    source.add_argument("--data-dir", type=Path, default=None, help=data_help)
    source.add_argument("--server", default=None, help="HOST:PORT of a running server (ExportTrainingData)")
    export.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole export with --server")
    export.set_defaults(func=export_command)

    monitor = subparsers.add_parser("monitor", help="scan workspaces' pipelines on a schedule and print new alerts")
    monitor.add_argument("--server", required=True, help="HOST:PORT of a running server")
    monitor.add_argument("--workspace", action="append", required=True, help="a workspace to scan (repeatable)")
    monitor.add_argument("--every", type=_positive_duration, default=1800.0, help="time between scans (default 30m)")
    monitor.add_argument("--window", type=parse_duration, default=86_400.0,
                         help="do not repeat an alert within this time (default 24h)")
    monitor.add_argument("--data-dir", type=Path, default=None, help=data_help + "; alerts are stored there")
    monitor.add_argument("--out", type=Path, default=None, help="append alerts to this file (default stdout)")
    monitor.add_argument("--once", action="store_true", help="scan once and exit")
    monitor.add_argument("--timeout", type=float, default=120.0, help="seconds per scan call")
    monitor.set_defaults(func=monitor_command)

    quality = subparsers.add_parser("quality", help="helpful rate, action rate and Brier score from the ledger")
    quality.add_argument("--data-dir", type=Path, default=None, help=data_help)
    quality.add_argument("--workspace", default=None, help="one workspace (default: all)")
    quality.add_argument("--json", action="store_true")
    quality.set_defaults(func=quality_command)
