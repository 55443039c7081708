"""Scoring benchmark: onnxruntime vs xgboost, and the served ScoreDeal vs health Check.

Reports, in one run, for one scorer trained here on synthetic deals:
- model latency, p50 of many calls, one thread: onnxruntime on the onnxmltools
  export vs xgboost's native `inplace_predict` on the same trees, for one row
  and for 1,000 rows; beside them the served ONNX file (the same classifier
  plus the contributions output), xgboost's own approximate contributions, and
  the whole engine (`ScorerModel.score`: features, onnxruntime, top factors);
- served `ScoreDeal` requests/s and p50/p99 latency at concurrency 1 and 16,
  beside the same server's `grpc.health.v1.Health/Check` as the floor, with
  h2load as the client (a Python client saturates before the server does).
  The server is `vectoros serve` over a model repository holding the scorer.
  The two calls
  alternate in rounds so that both see the same load on a shared machine.

- ScoreDeals of 1,000 stored deals with the similarity-trained demo scorer
  (`scripts/build_demo.py`, built once under `--demo-dir`): deals/s, and the
  p50/p99 of health Checks sent one at a time on another connection while the
  batches run, beside the Checks' p99 on the idle server. A batch whose
  neighbour lookups ran on the event loop stalls every other call.

Targets: ScoreDeal throughput >= 70 % of Check's at concurrency 16; ScoreDeal
p99 < 5 ms at concurrency 1.

    .venv/bin/python bench/bench_scoring.py [--deals 5000] [--requests 20000] [--demo-dir DIR | --no-batch]

The machine is shared and noisy: compare figures within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.loadtest import grpc_frame  # noqa: E402
from server.engines.scoring import load_scorer  # noqa: E402
from server.models.publish import publish  # noqa: E402
from tests.support.serverproc import start_server  # noqa: E402
from training.records import write_deals  # noqa: E402
from training.scorer import TrainConfig, train_scorer  # noqa: E402
from training.synth import DATE_COLUMNS, synth_deals  # noqa: E402
from vectoros.core.deal_codec.proto import deal_to_proto  # noqa: E402
from vectoros.core.manifest import Manifest  # noqa: E402
from vectoros.v1 import scoring_pb2, scoring_pb2_grpc  # noqa: E402

SCORE_METHOD = "vectoros.v1.ScoringService/ScoreDeal"
CHECK_METHOD = "grpc.health.v1.Health/Check"
ROUNDS = 5


def p50_us(function, repeats: int) -> float:
    for _ in range(min(200, repeats)):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        function()
        times.append(time.perf_counter_ns() - started)
    return statistics.median(times) / 1e3


def model_latency(result, directory: Path, repeats: int) -> dict[str, float]:
    import onnxruntime as ort

    booster = result.model.get_booster()
    booster.set_param({"nthread": 1})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    from training.scorer import TARGET_OPSET

    # The plain onnxmltools conversion (what xgboost is compared with), and the
    # served file (the same classifier plus the contributions output).
    plain = onnxmltools.convert_xgboost(
        result.model, initial_types=[("features", FloatTensorType([None, result.spec.width]))],
        target_opset=TARGET_OPSET,
    ).SerializeToString()
    session = ort.InferenceSession(plain, options, providers=["CPUExecutionProvider"])
    served = ort.InferenceSession(str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rows = result.test_features[rng.integers(0, len(result.test_features), 1000)]
    one = rows[:1].copy()
    scorer = load_scorer(directory, Manifest.load(directory))
    records = synth_deals(1000, seed=99)
    figures = {}
    for label, batch, count in (("1 row", one, repeats), ("1,000 rows", rows, max(20, repeats // 100))):
        figures[f"onnxruntime, onnxmltools export, {label}"] = p50_us(
            lambda b=batch: session.run(["probabilities"], {"features": b}), count)
        figures[f"onnxruntime, served model (+ contributions), {label}"] = p50_us(
            lambda b=batch: served.run(["probabilities", "contributions"], {"features": b}), count)
        figures[f"xgboost inplace_predict, {label}"] = p50_us(
            lambda b=batch: booster.inplace_predict(b, missing=np.nan), count)
        figures[f"xgboost approx contributions, {label}"] = p50_us(
            lambda b=batch: booster.predict(_dmatrix(b), pred_contribs=True, approx_contribs=True), count)
        deals = records[: len(batch)]
        figures[f"engine ScorerModel.score, {label}"] = p50_us(lambda d=deals: scorer.score(d), count)
    return figures


def _dmatrix(batch):
    import xgboost

    return xgboost.DMatrix(batch, missing=np.nan, nthread=1)


def h2load(address: str, method: str, frame: bytes, requests: int, concurrency: int) -> dict:
    """requests/s and the per-request latencies (ms) of one h2load run: one
    connection, `concurrency` streams at a time, latencies from its log."""
    with tempfile.TemporaryDirectory() as folder:
        body, log = Path(folder) / "body.bin", Path(folder) / "log.tsv"
        body.write_bytes(frame)
        command = [
            "h2load", f"http://{address}/{method}", "-n", str(requests), "-c", "1", "-m", str(concurrency),
            "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers", "--log-file", str(log),
        ]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    statuses = {row[1] for row in rows}
    if statuses != {"200"}:
        raise RuntimeError(f"h2load saw HTTP statuses {statuses}:\n{output}")
    latencies = np.array([int(row[2]) for row in rows]) / 1e3
    started = min(int(row[0]) for row in rows)
    ended = max(int(row[0]) + int(row[2]) for row in rows)
    return {"requests_per_second": len(rows) / ((ended - started) / 1e6), "latencies_ms": latencies}


def served(models: Path, deal, requests: int) -> dict[str, dict[str, float]]:
    from grpc_health.v1 import health_pb2

    proc = start_server("--models", str(models), "--data-dir", str(models.parent / "data"), "--log-level", "WARNING")
    try:
        with proc.channel() as channel:
            # One checked call first: h2load sees HTTP statuses, not gRPC ones.
            response = scoring_pb2_grpc.ScoringServiceStub(channel).ScoreDeal(
                scoring_pb2.ScoreDealRequest(deal=deal), timeout=10
            )
        assert response.score.model.version == 1
        frames = {
            "Check": (CHECK_METHOD, grpc_frame(health_pb2.HealthCheckRequest(service=""))),
            "ScoreDeal": (SCORE_METHOD, grpc_frame(scoring_pb2.ScoreDealRequest(deal=deal))),
        }
        results = {}
        for concurrency in (1, 16):
            count = requests if concurrency > 1 else max(2000, requests // 5)
            for method, frame in frames.values():
                h2load(proc.address, method, frame, min(2000, count), concurrency)  # warm-up
            # Other work on this shared machine comes and goes: alternate short
            # runs of the two calls and pool them, so both see the same conditions.
            runs: dict[str, list[dict]] = {name: [] for name in frames}
            for _ in range(ROUNDS):
                for name, (method, frame) in frames.items():
                    runs[name].append(h2load(proc.address, method, frame, count // ROUNDS, concurrency))
            for name, measured in runs.items():
                latencies = np.concatenate([m.pop("latencies_ms") for m in measured])
                results[f"{name} c{concurrency}"] = {
                    "requests_per_second": statistics.median(m["requests_per_second"] for m in measured),
                    "p50_ms": float(np.percentile(latencies, 50)),
                    "p99_ms": float(np.percentile(latencies, 99)),
                    "requests": int(latencies.size),
                }
        errors = [line for line in proc.log_lines if line.get("code") not in (None, "OK")]
        if errors:
            raise RuntimeError(f"the server logged failed calls: {errors[:3]}")
        return results
    finally:
        proc.terminate()


def batch_beside_health(demo: Path, batches: int = 5) -> dict[str, float]:
    """ScoreDeals of 1,000 stored demo deals, back to back, while a second
    connection sends health Checks one at a time (see the module docstring)."""
    import asyncio
    import dataclasses

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from training.records import read_deals

    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_demo.py"), "--models", str(demo / "models"),
                    "--data-dir", str(demo / "data")], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                   stdout=subprocess.DEVNULL)
    stored = read_deals(demo / "data" / "demo-build" / "deals.csv").records[:1000]
    request = scoring_pb2.ScoreDealsRequest(
        deals=[deal_to_proto(dataclasses.replace(r, workspace_id="demo")) for r in stored])
    proc = start_server("--models", str(demo / "models"), "--data-dir", str(demo / "data"), "--log-level", "WARNING")

    async def checks(stub, stop: asyncio.Event) -> list[float]:
        latencies = []
        while not stop.is_set():
            started = time.perf_counter()
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    async def run() -> dict[str, float]:
        async with grpc.aio.insecure_channel(proc.address) as scoring_channel, \
                grpc.aio.insecure_channel(proc.address, options=[("grpc.use_local_subchannel_pool", 1)]) as other:
            scorer = scoring_pb2_grpc.ScoringServiceStub(scoring_channel)
            health_stub = health_pb2_grpc.HealthStub(other)
            # Warm-up, with every factor shown: the similarity features must be served.
            every = scoring_pb2.ScoreDealsRequest(deals=request.deals, top_factors=50)
            first = await scorer.ScoreDeals(every, timeout=120)
            served = sum(f.value != "missing" for s in first.scores for f in s.top_factors
                         if f.feature == "similar_win_rate")
            idle_stop = asyncio.Event()
            idle = asyncio.create_task(checks(health_stub, idle_stop))
            await asyncio.sleep(3.0)
            idle_stop.set()
            idle_latencies = await idle
            stop = asyncio.Event()
            beside = asyncio.create_task(checks(health_stub, stop))
            started = time.perf_counter()
            for _ in range(batches):
                await scorer.ScoreDeals(request, timeout=120)
            elapsed = time.perf_counter() - started
            stop.set()
            busy = await beside
            return {
                "deals_per_second": batches * len(request.deals) / elapsed,
                "check_p50_ms_beside": float(np.percentile(busy, 50)),
                "check_p99_ms_beside": float(np.percentile(busy, 99)),
                "check_max_ms_beside": float(max(busy)),
                "check_p99_ms_idle": float(np.percentile(idle_latencies, 99)),
                "checks_beside": len(busy),
                "deals_with_similarity_features": served,
            }

    try:
        return asyncio.run(run())
    finally:
        proc.terminate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=5000, help="synthetic deals to train on")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per served run at concurrency 16")
    parser.add_argument("--repeats", type=int, default=3000, help="calls per single-row latency figure")
    parser.add_argument("--grid", choices=("default", "small"), default="default")
    parser.add_argument("--demo-dir", type=Path, default=Path(tempfile.gettempdir()) / "vectoros-bench-demo",
                        help="where the demo models and data for the ScoreDeals batch are built (kept for reuse)")
    parser.add_argument("--no-batch", action="store_true", help="skip the ScoreDeals-beside-health figure")
    args = parser.parse_args()
    if not shutil.which("h2load"):
        parser.error("h2load is needed (Debian package nghttp2-client)")

    from training.scorer import DEFAULT_GRID, SMALL_GRID

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        records = synth_deals(args.deals, seed=1)
        data = write_deals(records, work / "deals.csv", custom_dates=DATE_COLUMNS)
        config = TrainConfig(grid=SMALL_GRID if args.grid == "small" else DEFAULT_GRID, progress=False,
                             jobs=os.cpu_count() or 2)
        started = time.perf_counter()
        result = train_scorer(data, work / "artifact", config)
        trained_s = time.perf_counter() - started
        m = result.metrics
        print(f"model: {int(m['trees'])} trees, max_depth {result.params['max_depth']}, "
              f"{len(result.spec.features)} features; trained on {args.deals} synthetic deals in {trained_s:.0f} s; "
              f"held-out ROC AUC {m['roc_auc']:.3f}, Brier {m['brier']:.3f}, ECE {m['ece']:.3f}")

        figures = model_latency(result, result.out_dir, args.repeats)
        print("\nmodel latency, p50 (microseconds, one thread):")
        for name, value in figures.items():
            print(f"  {name:55s} {value:12.1f}")
        for label in ("1 row", "1,000 rows"):
            ratio = figures[f"xgboost inplace_predict, {label}"] / figures[f"onnxruntime, onnxmltools export, {label}"]
            print(f"  xgboost / onnxruntime, {label}: {ratio:.2f}x")

        models = work / "models"
        publish(result.out_dir, models)
        deal = deal_to_proto(records[-1])
        results = served(models, deal, args.requests)
    print("\nserved (h2load, one connection):")
    print(f"  {'call':16s} {'requests/s':>11s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, r in results.items():
        print(f"  {name:16s} {r['requests_per_second']:11.0f} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f}")
    share = results["ScoreDeal c16"]["requests_per_second"] / results["Check c16"]["requests_per_second"]
    p99 = results["ScoreDeal c1"]["p99_ms"]
    print(f"\nScoreDeal / Check throughput at concurrency 16: {share:.0%} (target >= 70%): "
          f"{'met' if share >= 0.7 else 'NOT met'}")
    print(f"ScoreDeal p99 at concurrency 1: {p99:.2f} ms (target < 5 ms): {'met' if p99 < 5 else 'NOT met'}")
    batch = None
    if not args.no_batch:
        batch = batch_beside_health(args.demo_dir)
        print("\nScoreDeals of 1,000 stored deals, similarity-trained demo scorer, beside health Checks:")
        print(f"  {batch['deals_per_second']:.0f} deals/s; Check p50 {batch['check_p50_ms_beside']:.2f} ms, "
              f"p99 {batch['check_p99_ms_beside']:.2f} ms, max {batch['check_max_ms_beside']:.1f} ms beside "
              f"({batch['checks_beside']} Checks); idle Check p99 {batch['check_p99_ms_idle']:.2f} ms; "
              f"{batch['deals_with_similarity_features']} of 1000 deals had similarity features")
    print(json.dumps({"model": figures, "served": results, "throughput_share_c16": share, "batch": batch}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
