"""Similarity benchmark: FindSimilarDeals in the embedded store (Qdrant Edge) beside
a NumPy brute-force search over the same vectors.

For each size (10,000 and 100,000 stored deals by default), in one run:
- upsert throughput into a fresh Edge collection (payloads as the engine writes
  them, 256 points per call, WAL on),
- FindSimilarDeals by stored deal id with a workspace and an outcome filter
  (won or lost), p50 / p99 of the engine call (`SimilarityEngine.find`: read the
  stored vector, filtered search, decode the matches, summary), first on the
  fresh collection (exact search over the segment the WAL fills), then after
  `optimize()` (HNSW), whose time is reported; and with the index built, the
  same call served by `vectoros serve` over gRPC (its own process on the
  benchmark's store; one sequential Python client, whose own work is in the
  figure), beside a health Check over the same channel (the round trip with
  no work),
- search-time HNSW ef 64 / 100 (Qdrant's default, served) / 128 (the server's
  `--search-hnsw-ef`): the store's search p50 / p99 and recall@10,
- NumPy brute force over the same vectors: the workspace and outcome mask, one
  matrix-vector product over the masked rows and `argpartition` (float32),
- reopen time (closing and loading the shard again).

Deals are spread over `--workspaces` workspaces (default 10, so a query sees
~10% of the store; `--workspaces 1` is the worst case: every deal in one
tenant). Vectors are random unit vectors (384 dims), clustered around topics by
default (`--vectors random` for no structure, where HNSW recall drops: it is
reported beside each figure). Target: p99 under 5 ms at 100,000.

    .venv/bin/python bench/bench_similarity.py [--sizes 10000 100000] [--workspaces 10] [--queries 500]

The machine is shared and noisy (2 cores): compare figures within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from server.engines.similarity import Query, SimilarityEngine, deal_payload, text_sha256  # noqa: E402
from server.stores.base import DealFilter, DealPoint, point_id  # noqa: E402
from server.stores.edge import EdgeStore  # noqa: E402
from vectoros.core.deals import DealRecord, Outcome  # noqa: E402
from vectoros.v1 import common_pb2, similarity_pb2, similarity_pb2_grpc  # noqa: E402

DIM = 384
BATCH = 256
OUTCOMES = (Outcome.OPEN, Outcome.WON, Outcome.LOST)
INDUSTRIES = ("software", "retail", "health", "finance", "logistics", "education")
STAGES = ("discovery", "qualification", "proposal", "negotiation", "closed")
FILTER = DealFilter(outcomes=("won", "lost"))
NOTES = (
    "Champion in IT, procurement wants a three-year term; security review passed, "
    "competitor discounting hard; pilot with two teams went well, budget approved for Q3."
)


class StoredVectorsOnly:
    """The benchmark queries by stored id, so no text is ever embedded."""

    name = "embedder"
    version = 1
    dimension = DIM

    async def embed(self, texts):
        raise AssertionError("the benchmark does not embed")


class Loaded:
    def current(self):
        return StoredVectorsOnly()

    def version(self, version):
        return StoredVectorsOnly() if version == 1 else None


def unit_vectors(count: int, seed: int, kind: str = "clustered") -> np.ndarray:
    """Random unit vectors. "clustered": around count/100 random topic centres, so a
    deal's nearest neighbours are ~0.75 similar and the rest ~0, roughly as with
    real deal embeddings; "random": no structure at all (the worst case for HNSW)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    if kind == "clustered":
        centres = rng.standard_normal((max(1, count // 100), DIM), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        vectors = centres[rng.integers(0, len(centres), count)] + 0.6 * vectors
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def percentiles(samples: list[float]) -> dict[str, float]:
    values = np.array(samples) * 1e3
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def build_points(count: int, workspaces: int, vectors: np.ndarray, outcomes: np.ndarray) -> list[DealPoint]:
    points = []
    for i in range(count):
        workspace = f"ws-{i % workspaces}"
        record = DealRecord(
            deal_id=f"deal-{i}",
            workspace_id=workspace,
            name=f"Deal {i}",
            company=f"Company {i % 997}",
            industry=INDUSTRIES[i % len(INDUSTRIES)],
            region="emea",
            notes=NOTES,
            value=float(1_000 + (i * 37) % 500_000),
            currency="USD",
            stage=STAGES[i % len(STAGES)],
            outcome=OUTCOMES[outcomes[i]],
        )
        payload = deal_payload(workspace, record, text_sha256(str(i)))
        points.append(DealPoint(point_id(workspace, record.deal_id), vectors[i], payload))
    return points


class BruteForce:
    """NumPy: the stored matrix, workspace and outcome columns; mask, matmul, top k."""

    def __init__(self, vectors: np.ndarray, workspace: np.ndarray, outcomes: np.ndarray) -> None:
        self.vectors = vectors
        self.workspace = workspace
        self.closed = outcomes != 0

    def search(self, row: int, k: int = 10) -> np.ndarray:
        rows = np.flatnonzero((self.workspace == self.workspace[row]) & self.closed)
        rows = rows[rows != row]
        scores = self.vectors[rows] @ self.vectors[row]
        top = np.argpartition(-scores, k)[:k]
        return rows[top[np.argsort(-scores[top])]]


async def time_engine(engine: SimilarityEngine, rows: np.ndarray, workspaces: int) -> list[float]:
    samples = []
    for row in rows.tolist():
        started = time.perf_counter()
        result = await engine.find(f"ws-{row % workspaces}", Query(deal_id=f"deal-{row}"), deal_filter=FILTER)
        samples.append(time.perf_counter() - started)
        assert len(result.matches) == 10
    return samples


def time_served(folder: Path, rows: np.ndarray, workspaces: int) -> tuple[list[float], list[float]]:
    """FindSimilarDeals against `vectoros serve` itself (its own process, the store in
    `folder`), from a client in this process, one call at a time; and after each, a
    health Check over the same channel (the round trip with no work: the floor)."""
    from server.models.publish import publish
    from tests.support.serverproc import start_server
    from training.embedder import cached_export

    models = folder / "models"
    if not models.exists():
        publish(cached_export(), models)  # the server needs an embedder for Similarity to serve
    proc = start_server("--models", str(models), "--data-dir", str(folder), "--log-level", "WARNING", timeout=180)
    samples: list[float] = []
    floor: list[float] = []
    try:
        with proc.channel() as channel:
            stub = similarity_pb2_grpc.SimilarityServiceStub(channel)
            query_filter = similarity_pb2.SimilarityFilter(
                outcomes=[common_pb2.DEAL_OUTCOME_WON, common_pb2.DEAL_OUTCOME_LOST]
            )
            requests = [
                similarity_pb2.FindSimilarDealsRequest(
                    workspace_id=f"ws-{row % workspaces}", deal_id=f"deal-{row}", filter=query_filter
                )
                for row in rows.tolist()
            ]
            # Warm-up, one pass: the connection, and the shard's pages, which this
            # new process maps on first touch (the engine figures above ran warm).
            for request in requests:
                stub.FindSimilarDeals(request, timeout=30)
            health = health_pb2_grpc.HealthStub(channel)
            for request in requests:
                started = time.perf_counter()
                response = stub.FindSimilarDeals(request, timeout=30)
                samples.append(time.perf_counter() - started)
                assert len(response.matches) == 10 and response.embedder.version == 1
                started = time.perf_counter()
                health.Check(health_pb2.HealthCheckRequest(), timeout=30)
                floor.append(time.perf_counter() - started)
    finally:
        proc.terminate()
    return samples, floor


def ef_lever(store: EdgeStore, brute: BruteForce, rows: np.ndarray, workspaces: int) -> dict:
    """Search-time HNSW `ef` (candidates kept while walking the graph; Qdrant's
    default is the index's ef_construct, 100, which the server uses unless
    `--search-hnsw-ef` says otherwise): the store's search (`EdgeCollection.search`
    with the engine's filter, no record decoding) p50 / p99 and recall@10, the
    values taking turns query by query (the first to run a query warms its
    pages, so the order rotates)."""
    collection = store.open_collection("embedder-v1")
    choices = (64, 100, 128)
    samples: dict[int, list[float]] = {ef: [] for ef in choices}
    hits = dict.fromkeys(choices, 0)
    try:
        for index, row in enumerate(rows.tolist()):
            workspace = f"ws-{row % workspaces}"
            exclude = [point_id(workspace, f"deal-{row}")]
            expected = {point_id(workspace, f"deal-{r}") for r in brute.search(row).tolist()}
            turn = index % len(choices)  # who goes first (and warms the query's pages) rotates
            for ef in choices[turn:] + choices[:turn]:
                started = time.perf_counter()
                found = collection.search(workspace, brute.vectors[row], limit=10, deal_filter=FILTER,
                                          exclude_point_ids=exclude, hnsw_ef=ef)
                samples[ef].append(time.perf_counter() - started)
                hits[ef] += len({hit.point.point_id for hit in found} & expected)
    finally:
        collection.close()
    return {ef: {**percentiles(samples[ef]), "recall": hits[ef] / (10 * len(rows))} for ef in choices}


def recall(engine: SimilarityEngine, brute: BruteForce, rows: np.ndarray, workspaces: int) -> float:
    """Share of NumPy's exact top 10 that the store returned (1.0 for exact search)."""

    async def run() -> float:
        hits = 0
        for row in rows.tolist():
            result = await engine.find(f"ws-{row % workspaces}", Query(deal_id=f"deal-{row}"), deal_filter=FILTER)
            found = {m.deal.deal_id for m in result.matches}
            hits += len(found & {f"deal-{r}" for r in brute.search(row).tolist()})
        return hits / (10 * len(rows))

    return asyncio.run(run())


def bench_size(count: int, workspaces: int, queries: int, folder: Path, skip_optimize: bool, kind: str) -> dict:
    vectors = unit_vectors(count, seed=count, kind=kind)
    rng = np.random.default_rng(1)
    outcomes = rng.integers(0, 3, count)
    workspace = np.arange(count) % workspaces
    points = build_points(count, workspaces, vectors, outcomes)
    rows = rng.choice(np.flatnonzero(outcomes != 0), size=queries, replace=False)
    figures: dict = {"deals": count, "workspaces": workspaces, "queries": queries, "vectors": kind}

    store = EdgeStore(folder / "vectors")
    collection = store.create_collection("embedder", 1, DIM)
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        collection.upsert(points[start : start + BATCH])
    elapsed = time.perf_counter() - started
    figures["upsert_per_s"] = count / elapsed
    figures["upsert_s"] = elapsed
    collection.close()
    store.mark_complete("embedder-v1")

    brute = BruteForce(vectors, workspace, outcomes)
    samples = []
    for row in rows.tolist():
        started = time.perf_counter()
        brute.search(row)
        samples.append(time.perf_counter() - started)
    figures["numpy"] = percentiles(samples)

    engine = SimilarityEngine(store, Loaded())
    engine.open()
    figures["edge_exact"] = percentiles(asyncio.run(time_engine(engine, rows, workspaces)))
    figures["edge_exact_recall"] = recall(engine, brute, rows[:100], workspaces)
    collection = engine.serving()[0]
    if not skip_optimize:
        started = time.perf_counter()
        collection.optimize()
        figures["optimize_s"] = time.perf_counter() - started
        figures["edge_hnsw"] = percentiles(asyncio.run(time_engine(engine, rows, workspaces)))
        figures["edge_hnsw_recall"] = recall(engine, brute, rows[:100], workspaces)
    engine.close()
    if not skip_optimize:
        # The served figure only with the index built: a server finding this many
        # unindexed points would start rebuilding the collection at once.
        served, floor = time_served(folder, rows, workspaces)
        figures["edge_hnsw_served"] = percentiles(served)
        figures["served_health_check"] = percentiles(floor)
        figures["hnsw_ef"] = ef_lever(store, brute, rows, workspaces)

    started = time.perf_counter()
    reopened = store.open_collection("embedder-v1")
    figures["reopen_s"] = time.perf_counter() - started
    reopened.close()
    return figures


def report(results: list[dict]) -> str:
    lines = [
        "| deals | workspaces | search | engine p50 / p99 ms | served p50 / p99 ms | recall@10 | NumPy p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        numpy_cell = f"{r['numpy']['p50_ms']:.2f} / {r['numpy']['p99_ms']:.2f}"
        for kind, label in (("edge_exact", "exact (fresh)"), ("edge_hnsw", "HNSW (optimized)")):
            if kind not in r:
                continue
            served = r.get(kind + "_served")
            served_cell = f"{served['p50_ms']:.2f} / {served['p99_ms']:.2f}" if served else "-"
            lines.append(
                f"| {r['deals']:,} | {r['workspaces']} | {label} "
                f"| {r[kind]['p50_ms']:.2f} / {r[kind]['p99_ms']:.2f} | {served_cell} "
                f"| {r[kind + '_recall']:.3f} | {numpy_cell} |"
            )
    lines += ["", "| deals | served health Check p50 / p99 ms (the gRPC floor) |", "|---|---|"]
    for r in results:
        if "served_health_check" in r:
            check = r["served_health_check"]
            lines.append(f"| {r['deals']:,} | {check['p50_ms']:.2f} / {check['p99_ms']:.2f} |")
    lines += ["", "| deals | search-time ef | store search p50 / p99 ms | recall@10 |", "|---|---|---|---|"]
    for r in results:
        for ef, figures in r.get("hnsw_ef", {}).items():
            default = " (default)" if int(ef) == 100 else ""
            lines.append(f"| {r['deals']:,} | {ef}{default} | {figures['p50_ms']:.2f} / {figures['p99_ms']:.2f} "
                         f"| {figures['recall']:.3f} |")
    lines += ["", "| deals | upsert deals/s | optimize s | reopen s |", "|---|---|---|---|"]
    for r in results:
        optimize = f"{r['optimize_s']:.1f}" if "optimize_s" in r else "-"
        lines.append(f"| {r['deals']:,} | {r['upsert_per_s']:,.0f} | {optimize} | {r['reopen_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workspaces", type=int, default=10)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--vectors", choices=("clustered", "random"), default="clustered")
    parser.add_argument("--skip-optimize", action="store_true", help="measure exact search only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-similarity-") as folder:
            figures = bench_size(size, args.workspaces, args.queries, Path(folder), args.skip_optimize, args.vectors)
        results.append(figures)
        print(json.dumps(figures), file=sys.stderr, flush=True)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
