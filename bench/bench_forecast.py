"""Forecast benchmark: served time vs the random-number bound and a loop.

Reports, in one run, for 10,000 simulations x 1,000 and x 10,000 deals with the
full model (correlation, close timing, amount noise):
- the bound: NumPy drawing that many float32 uniforms on one thread (PCG64),
- the served `Forecast` over gRPC against a real server process (end to end:
  serialization, validation, simulation, response),
- a straightforward loop-per-simulation implementation (bench/loop_forecast.py),
and prints served/bound and loop/served. Target: served <= 3x bound at 1,000 deals.

    .venv/bin/python bench/bench_forecast.py [--repeats 5] [--loop-simulations 1000]

The machine is shared and noisy: each figure is the median of --repeats runs,
and the ratios come from the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loop_forecast import loop_forecast  # noqa: E402

from server.engines import forecast as engine  # noqa: E402
from tests.support.serverproc import start_server  # noqa: E402
from vectoros.v1 import common_pb2, forecast_pb2, forecast_pb2_grpc  # noqa: E402

SIMULATIONS = 10_000
START, END = datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC)


def pipeline(deals: int, seed: int = 1) -> tuple[list[common_pb2.Deal], list[engine.PipelineDeal]]:
    rng = np.random.default_rng(seed)
    values = rng.lognormal(10, 1, deals)
    probabilities = rng.uniform(0.05, 0.95, deals)
    offsets = rng.uniform(-30, 120, deals)
    protos, records = [], []
    for i in range(deals):
        close = datetime.fromtimestamp(START.timestamp() + offsets[i] * 86400, tz=UTC)
        deal = common_pb2.Deal(id=f"deal-{i}", value=values[i], probability=probabilities[i], currency="USD")
        deal.expected_close_time.FromDatetime(close)
        protos.append(deal)
        records.append(engine.PipelineDeal(f"deal-{i}", float(values[i]), float(probabilities[i]), close, "USD"))
    return protos, records


def draw_uniforms(count: int, chunk: int = 262_144) -> None:
    """The bound: NumPy drawing `count` float32 uniforms on one thread, into a
    reused cache-sized buffer (its fastest way; one big array would add the
    cost of touching fresh memory and make the bound look slower)."""
    rng = np.random.default_rng(0)
    buffer = np.empty(chunk, dtype=np.float32)
    for _ in range(count // chunk):
        rng.random(out=buffer, dtype=np.float32)
    rest = count % chunk
    if rest:
        rng.random(out=buffer[:rest], dtype=np.float32)


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(stub, deals: int, repeats: int, loop_simulations: int) -> tuple[float, float, float]:
    """Seconds for: drawing the uniforms, the served Forecast, the loop (scaled)."""
    protos, records = pipeline(deals)
    request = forecast_pb2.ForecastRequest(deals=protos)
    request.period.start_time.FromDatetime(START)
    request.period.end_time.FromDatetime(END)
    request.options.simulations = SIMULATIONS
    request.options.seed = 42
    stub.Forecast(request, timeout=120)  # warm-up
    bound = median_time(lambda: draw_uniforms(SIMULATIONS * deals), repeats)
    served = median_time(lambda: stub.Forecast(request, timeout=120), repeats)
    settings = engine.SimulationSettings(simulations=loop_simulations, seed=1)
    period = engine.Period(START, END)
    loop = median_time(lambda: loop_forecast(records, period, settings), 1) * SIMULATIONS / loop_simulations
    return bound, served, loop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-simulations", type=int, default=1_000, help="loop run size, scaled to 10,000")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = start_server("--data-dir", f"{tmp}/data", "--models", f"{tmp}/models", "--log-level", "WARNING")
        try:
            channel = server.channel()
            stub = forecast_pb2_grpc.ForecastServiceStub(channel)
            print(
                f"{'deals':>7} {'bound ms':>9} {'served ms':>10} {'loop ms':>10}"
                f" {'served/bound':>13} {'loop/served':>12}"
            )
            for deals in (1_000, 10_000):
                bound, served, loop = measure(stub, deals, args.repeats, args.loop_simulations)
                print(
                    f"{deals:>7} {bound * 1e3:>9.1f} {served * 1e3:>10.1f} {loop * 1e3:>10.0f}"
                    f" {served / bound:>12.2f}x {loop / served:>11.1f}x"
                )
            channel.close()
        finally:
            server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
