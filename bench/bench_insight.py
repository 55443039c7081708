"""GenerateInsights benchmark: the rules generator on a workspace of 10,000 stored
deals (target p50 under 50 ms).

Setup: a scorer trained here on synthetic deals, the real embedder (the ONNX
export cached by `training.embedder.cached_export`) behind the server's
dynamic batcher, Qdrant Edge on disk without HNSW (exact search over the
workspace's segment: the slow case), the SQLite ledger. The 10,000 stored deals
are synthetic deals with real payloads, written straight into the collection
with random unit vectors: search cost does not depend on what the vectors mean,
and embedding 10,000 texts would take minutes. Query deals are embedded for
real.

Measured in one run, sequential requests:
- cold: `InsightEngine.generate` on deals that are not stored (embedded),
  cache bypassed;
- stored: deals stored with unchanged text (their stored vector is reused);
- cached: a repeat of the cold requests (the context cache);
- grpc: the cold case through an in-process aio server and a Python client;
- parts, p50 each: scoring one deal, similarity search by deal (embed + search)
  and by stored id, the history lookup, the rules, the ledger write;
- the history index: first build (one scroll of the store), the summary of the
  10,000-deal workspace, and the catch-up after 100 upserts.

    .venv/bin/python bench/bench_insight.py [--deals 10000] [--requests 200]

The machine is shared and noisy (2 cores): compare figures within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from server.engines.embedding import BatcherConfig, DynamicBatcher, load_embedder  # noqa: E402
from server.engines.insight import CLOSED, HistoryIndex, InsightEngine, summarize_history  # noqa: E402
from server.engines.insight.monitor import PipelineMonitor  # noqa: E402
from server.engines.insight.rules import RulesGenerator  # noqa: E402
from server.engines.scoring import load_scorer  # noqa: E402
from server.engines.similarity import Query, RegistryEmbedders, SimilarityEngine, deal_payload, text_sha256  # noqa: E402
from server.ledger import Ledger  # noqa: E402
from server.models.publish import publish  # noqa: E402
from server.models.registry import ModelRegistry  # noqa: E402
from server.services.insight import InsightServicer  # noqa: E402
from server.stores.base import DealPoint, point_id  # noqa: E402
from server.stores.edge import EdgeStore  # noqa: E402
from training import embedder as embedder_export  # noqa: E402
from training.records import write_deals  # noqa: E402
from training.scorer import TrainConfig, train_scorer  # noqa: E402
from training.synth import DATE_COLUMNS, DEFAULT_END, synth_deals  # noqa: E402
from vectoros.core.deal_codec.proto import deal_to_proto  # noqa: E402
from vectoros.core.deal_text import deal_to_text  # noqa: E402
from vectoros.core.deals import Outcome  # noqa: E402
from vectoros.v1 import insight_pb2, insight_pb2_grpc  # noqa: E402

WORKSPACE = "bench"
NOW = DEFAULT_END  # the synthetic deals' period ends here: requests are "live" then


def ms(samples: list[float]) -> dict[str, float]:
    values = np.array(samples) * 1e3
    return {"p50_ms": round(float(np.percentile(values, 50)), 2), "p95_ms": round(float(np.percentile(values, 95)), 2)}


def build_models(folder: Path) -> Path:
    data = write_deals(synth_deals(1500, seed=101), folder / "deals.jsonl", custom_dates=DATE_COLUMNS)
    config = TrainConfig(folds=3, grid=({"max_depth": 4, "learning_rate": 0.1, "min_child_weight": 1},),
                         max_trees=200, progress=False)
    publish(train_scorer(data, folder / "scorer", config).out_dir, folder / "models")
    publish(embedder_export.cached_export(), folder / "models")
    return folder / "models"


def store_deals(similarity: SimilarityEngine, count: int, dimension: int) -> list:
    records = [replace(r, workspace_id=WORKSPACE, snapshot_at=None) for r in synth_deals(count, seed=202)]
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((count, dimension), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    collection, _ = similarity.serving()
    for start in range(0, count, 256):
        points = [
            DealPoint(point_id(WORKSPACE, r.deal_id), vectors[start + i],
                      deal_payload(WORKSPACE, r, text_sha256(deal_to_text(r))))
            for i, r in enumerate(records[start : start + 256])
        ]
        collection.upsert(points)
    return records


def live(record, deal_id: str | None = None):
    return replace(record, deal_id=deal_id or record.deal_id, workspace_id=WORKSPACE, outcome=Outcome.OPEN,
                   closed_at=None, snapshot_at=NOW)


async def timed(calls) -> list[float]:
    samples = []
    for call in calls:
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def main(args: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench-insight-"))
    print(f"training a scorer and publishing models under {folder} ...", file=sys.stderr)
    registry = ModelRegistry(build_models(folder), {"scorer": load_scorer, "embedder": load_embedder})
    registry.refresh(notify=False)
    batcher = DynamicBatcher(BatcherConfig())
    store = EdgeStore(folder / "vectors")
    similarity = SimilarityEngine(store, RegistryEmbedders(registry, batcher))
    similarity.open()
    _, embedder = similarity.serving()
    started = time.perf_counter()
    stored = store_deals(similarity, args.deals, embedder.dimension)
    print(f"stored {len(stored)} deals in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    ledger = Ledger.in_dir(folder / "data")
    history = HistoryIndex(similarity)
    engine = InsightEngine(registry, similarity, ledger, RulesGenerator(), history)
    results: dict = {"deals": args.deals, "requests": args.requests}

    started = time.perf_counter()
    history.ensure_built()
    results["history_build_s"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    summary = history.history(WORKSPACE)
    results["history_first_summary_ms"] = round((time.perf_counter() - started) * 1e3, 2)
    results["history_closed_deals"] = summary.overall.closed

    fresh = [live(r, f"q-{r.deal_id}") for r in synth_deals(args.requests, seed=303)]
    stored_open = [live(r) for r in stored[: args.requests * 3] if r.outcome is Outcome.OPEN][: args.requests]
    for record in fresh[:5]:  # warm up sessions, caches and code paths
        await engine.generate(record, bypass_cache=True)

    results["cold_engine"] = ms(await timed([lambda r=r: engine.generate(r, bypass_cache=True) for r in fresh]))
    results["stored_engine"] = ms(await timed([lambda r=r: engine.generate(r, bypass_cache=True)
                                               for r in stored_open]))
    results["cached_engine"] = ms(await timed([lambda r=r: engine.generate(r) for r in fresh]))

    # Parts of the cold path, each on its own.
    parts = {}
    parts["score_one_deal"] = ms(await timed([lambda r=r: engine.scoring.score([r], top_factors=8) for r in fresh]))
    # New ids with slightly different notes: not in the batcher's vector cache.
    unseen = [replace(r, notes=f"{r.notes} (v2)") for r in fresh]
    parts["find_by_deal_embeds"] = ms(await timed([
        lambda r=r: similarity.find(WORKSPACE, Query(deal=r), deal_filter=CLOSED, top_k=10) for r in unseen]))
    parts["find_by_stored_id"] = ms(await timed([
        lambda r=r: similarity.find(WORKSPACE, Query(deal_id=r.deal_id), deal_filter=CLOSED, top_k=10)
        for r in stored_open]))
    parts["history_lookup"] = ms(await timed([lambda r=r: asyncio.to_thread(history.lookup, WORKSPACE, r.deal_id)
                                              for r in fresh]))
    row = ledger.latest_insight_set(WORKSPACE, fresh[0].deal_id)

    async def write_row(i: int):
        ledger.add_insight_set(replace(row, id=f"bench-{i}", context_key=None))

    parts["ledger_write"] = ms(await timed([lambda i=i: write_row(i) for i in range(args.requests)]))
    rules = RulesGenerator()
    sample_context = await _context(engine, fresh[0])
    parts["rules_build"] = ms(await timed([lambda: asyncio.sleep(0, rules.build(sample_context))
                                           for _ in range(args.requests)]))
    deals = list(history._workspaces[WORKSPACE].deals.values())
    parts["summary_from_aggregate"] = ms(await timed([
        lambda: asyncio.sleep(0, history._workspaces[WORKSPACE].aggregate.summary()) for _ in range(50)]))
    parts["summary_full_pass_10k"] = ms(await timed([
        lambda: asyncio.sleep(0, summarize_history(deals)) for _ in range(10)]))
    results["parts"] = parts

    # Requests under churn: one stored deal written (CRM sync) before each request.
    churn = [replace(r, probability=0.25) for r in stored[200 : 200 + args.requests]]

    async def write_then_generate(written, record):
        await similarity.upsert(WORKSPACE, [written])
        started = time.perf_counter()
        await engine.generate(record, bypass_cache=True)
        return time.perf_counter() - started

    after_write = [await write_then_generate(w, replace(r, notes=f"{r.notes} (churn)"))
                   for w, r in zip(churn, fresh, strict=False)]
    results["cold_engine_after_a_write"] = ms(after_write)

    # Catch-up after writes: 100 deals re-upserted through the engine (stored vectors kept).
    changed = [replace(r, probability=0.5) for r in stored[:100]]
    await similarity.upsert(WORKSPACE, changed)
    started = time.perf_counter()
    history.lookup(WORKSPACE)
    results["history_catch_up_100_writes_ms"] = round((time.perf_counter() - started) * 1e3, 2)

    # The same cold requests over gRPC.
    server = grpc.aio.server()
    monitor = PipelineMonitor(registry, history, ledger)
    insight_pb2_grpc.add_InsightServiceServicer_to_server(InsightServicer(engine, monitor), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = insight_pb2_grpc.InsightServiceStub(channel)
        # Texts not embedded before (the batcher caches vectors by text).
        requests = [insight_pb2.GenerateInsightsRequest(
            deal=deal_to_proto(replace(r, snapshot_at=None, notes=f"{r.notes} (grpc)")), bypass_cache=True)
            for r in fresh]
        for request in requests[:5]:
            await stub.GenerateInsights(request)
        results["cold_grpc"] = ms(await timed([lambda q=q: stub.GenerateInsights(q) for q in requests]))
        # ScanPipeline over the workspace's stored open deals.
        started = time.perf_counter()
        scan = await stub.ScanPipeline(insight_pb2.ScanPipelineRequest(workspace_id=WORKSPACE))
        results["scan_stored_open"] = {"deals": scan.scanned_deals, "alerts": len(scan.alerts),
                                       "seconds": round(time.perf_counter() - started, 3)}
    await server.stop(None)
    await batcher.close()
    history.close()
    similarity.close()
    store.close()
    ledger.close()
    return results


async def _context(engine: InsightEngine, record):
    """The context the engine builds for `record` (the same steps as `generate`)."""
    from server.engines.insight import InsightContext, ModelRef, ScoreFactor, ScoreView

    history, stored = engine.history.lookup(WORKSPACE, record.deal_id)
    (scored,) = await engine.scoring.score([record], top_factors=8)
    score, loaded = scored.result, scored.loaded
    similar, embedder = await engine._similar(record, stored)
    return InsightContext(
        deal=record, now=NOW,
        score=ScoreView(score.win_probability, score.risk_level,
                        tuple(ScoreFactor(f.feature, f.value_text, f.contribution) for f in score.top_factors),
                        ModelRef(loaded.name, loaded.version)),
        embedder=embedder, similar=similar, history=history,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    outcome = asyncio.run(main(parser.parse_args()))
    print(json.dumps(outcome, indent=1))
