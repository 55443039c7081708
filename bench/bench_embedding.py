"""Embedding benchmark: sentence-transformers in-process vs the served `Embed`.

Reports, in one run, on deal-like texts of 20-120 words (about 100 tokens):
- sentence-transformers (PyTorch, in-process) `encode(texts, batch_size=32)`:
  texts per second: the baseline;
- the served `Embed` over gRPC (a server process on 127.0.0.1, the client in
  this process): texts per second with 32 concurrent callers sending one text
  each, and with 4 callers sending batches of 32; p50/p99 of a single-text
  call when the server is idle; and the same texts sent again (cache hits);
- the engine ceiling: two processes (one per core) embedding one text per
  call on one thread each, with no gRPC, batcher or client: what serving could
  reach on this machine with this graph; and where the two cores go while
  `vectoros serve` answers 32 callers (model threads, the rest of the server,
  the client: all on the same two cores);
- the levers, each measured side by side in rounds (the machine is shared):
  fp32 vs int8, int8 graphs (per-token vs per-call activation scales,
  8-bit MatMulNBits, fused MultiHeadAttention: `graph_variants.py`), texts per
  session call, sorted vs unsorted, intra-op threads,
  thread spinning, the memory arena (time and resident memory), and the
  server's worker/thread split.

Targets (issue 4): served throughput >= 3x sentence-transformers' in-process
throughput; idle single-text p99 < 15 ms.

    .venv/bin/python bench/bench_embedding.py [--texts 2000] [--json out.json]

The artifact is the cached export (training.embedder.cached_export; ~1 minute
the first time). The server is built from the same parts as `vectoros serve`
(registry, EmbeddingServicer, DynamicBatcher, the error interceptor) in a
child process started by this script, so its batcher and threads can be varied.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from training.embedder import cached_export, deal_like_texts  # noqa: E402

SEED = 2024
ROUNDS = 3


# --- helpers ----------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def interleaved(functions: dict[str, callable], rounds: int = ROUNDS) -> dict[str, float]:
    """Best seconds of each function, the functions taking turns round by round."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(rounds):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<58} {value:>14}  {note}")


class CpuSplit:
    """Where the machine's CPU went while the block ran, in % of one core: all of
    it (/proc/stat), the server's two busiest threads (the model workers), the
    rest of the server (event loop, gRPC), and this process (the client)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.shares: dict[str, float] = {}

    def _threads(self) -> dict[str, float]:
        seconds = {}
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            seconds[tid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return seconds

    @staticmethod
    def _machine() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            ticks = [int(value) for value in handle.readline().split()[1:]]
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # busy (not idle, not iowait), all

    def __enter__(self) -> CpuSplit:
        self._started = time.perf_counter()
        self._machine_before = self._machine()
        self._threads_before = self._threads()
        self._client_before = time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._started
        busy, total = (after - before for after, before in zip(self._machine(), self._machine_before, strict=True))
        used = sorted((spent - self._threads_before.get(tid, 0.0) for tid, spent in self._threads().items()),
                      reverse=True)
        self.shares = {
            "machine_busy": 100 * (os.cpu_count() or 1) * busy / max(total, 1),
            "model_threads": 100 * sum(used[:2]) / wall,
            "server_rest": 100 * sum(used[2:]) / wall,
            "client": 100 * (time.process_time() - self._client_before) / wall,
        }


# --- engine levers (in-process) ---------------------------------------------------


def engine_levers(artifact: Path, texts: list[str]) -> dict[str, float]:
    from vectoros.core.embedder import EmbedderSettings, load_embedder
    from vectoros.core.manifest import Manifest

    manifest = Manifest.load(artifact)

    def model(**settings):
        settings.setdefault("allow_spinning", False)
        return load_embedder(artifact, manifest, EmbedderSettings(**settings))

    configs = {
        "fp32, 16 per call, sorted, 2 threads": (model(precision="fp32", intra_op_threads=2), True),
        "fp32, 16 per call, unsorted": (model(precision="fp32", intra_op_threads=2), False),
        "fp32, 32 per call, sorted": (model(precision="fp32", intra_op_threads=2, sub_batch_size=32), True),
        "fp32, 1 per call": (model(precision="fp32", intra_op_threads=2, sub_batch_size=1), True),
        "fp32, 16 per call, sorted, 1 thread": (model(precision="fp32", intra_op_threads=1), True),
        "int8, 1 per call, 2 threads, spinning (a lone served call)": (
            model(precision="int8", intra_op_threads=2, allow_spinning=True), True),
        "int8, 1 per call, 1 thread (a served call under load)": (model(precision="int8", intra_op_threads=1), True),
        "int8, 1 per call, 2 threads, no spinning": (model(precision="int8", intra_op_threads=2), True),
        "int8, 1 per call, 2 threads, basic graph optimization": (
            model(precision="int8", intra_op_threads=2, graph_optimization="basic"), True),
        "int8, 1 per call, 2 threads, no graph optimization": (
            model(precision="int8", intra_op_threads=2, graph_optimization="none"), True),
        "int8, 16 per call, sorted": (model(precision="int8", intra_op_threads=2, sub_batch_size=16), True),
        "int8, 16 per call, unsorted": (model(precision="int8", intra_op_threads=2, sub_batch_size=16), False),
    }

    def run(embedder, sort):
        if sort:
            return embedder.embed(texts)
        # The same sub-batches without sorting: texts in arrival order.
        tokens = embedder.tokenize(texts)
        for rows in embedder.plan(tokens.token_counts, sort=False):
            embedder.run_padded([tokens.ids[row] for row in rows])

    for embedder, _ in configs.values():
        embedder.embed(texts[:8])  # warm-up
    seconds = interleaved({name: functools.partial(run, *config) for name, config in configs.items()}, rounds=2)
    return {name: len(texts) / value for name, value in seconds.items()}


def quantization_lever(artifact: Path, texts: list[str]) -> dict[str, dict[str, float]]:
    """The served int8 graph (per-token activation scales, `training.rowquant`) beside
    other int8 graphs of the same fp32 graph, all MatMuls quantized: onnxruntime's
    `quantize_dynamic` (one activation scale per call) and the two variants of
    `graph_variants`. Texts/s (one thread, one text per call, interleaved
    rounds), fidelity to the fp32 vectors, and the cosine of a text's vector
    alone vs in a sorted call of 16."""
    from graph_variants import matmul_nbits_8bit, multi_head_attention
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from training.embedder import FILES, TOKENIZER_FILE, cosine_per_row, fidelity
    from training.rowquant import quantize_per_token
    from vectoros.core.embedder import EmbedderModel, EmbedderSettings

    def model(path: Path, sub_batch: int, threads: int = 1) -> EmbedderModel:
        return EmbedderModel(path, artifact / TOKENIZER_FILE, precision="int8", dimension=384, max_tokens=256,
                             settings=EmbedderSettings(intra_op_threads=threads, sub_batch_size=sub_batch,
                                                       overlap_session=False))

    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        fp32 = artifact / FILES["fp32"]
        per_call, nbits, attention_fp32, attention = (
            Path(tmp) / name for name in ("per_call.onnx", "nbits.onnx", "mha_fp32.onnx", "mha.onnx"))
        quantize_dynamic(str(fp32), str(per_call), weight_type=QuantType.QInt8,
                         per_channel=True, reduce_range=False, op_types_to_quantize=["MatMul"])
        matmul_nbits_8bit(fp32, nbits)
        multi_head_attention(fp32, attention_fp32)
        quantize_per_token(attention_fp32, attention)
        graphs = {
            "per token (served)": artifact / FILES["int8"],
            "per call (quantize_dynamic)": per_call,
            "MatMulNBits 8-bit, block 128, accuracy_level 4": nbits,
            "per token + MultiHeadAttention fused": attention,
        }
        reference = model(artifact / FILES["fp32"], 16, threads=2).embed(texts).vectors
        results: dict[str, dict[str, float]] = {}
        singles = {name: model(path, 1) for name, path in graphs.items()}
        for single in singles.values():
            single.embed(texts[:4])
        seconds = interleaved({name: functools.partial(m.embed, texts) for name, m in singles.items()}, rounds=2)
        for name, path in graphs.items():
            alone = singles[name].embed(texts).vectors
            batched = model(path, 16).embed(texts).vectors
            together = cosine_per_row(batched, alone)
            results[name] = {
                "texts_per_second": len(texts) / seconds[name],
                **{f"vs_fp32_{k}": v for k, v in fidelity(alone, reference).items()},
                "batch_cosine_mean": float(together.mean()),
                "batch_cosine_min": float(together.min()),
            }
    return results


def int8_batch_dependence(artifact: Path, texts: list[str]) -> tuple[float, float]:
    """Mean and minimum cosine between a text's int8 vector computed alone and in
    sorted calls of 16 (1.0: per-token activation scales make it independent)."""
    from training.embedder import cosine_per_row
    from vectoros.core.embedder import EmbedderSettings, load_embedder
    from vectoros.core.manifest import Manifest

    manifest = Manifest.load(artifact)
    alone = load_embedder(artifact, manifest, EmbedderSettings(precision="int8")).embed(texts).vectors
    batched = load_embedder(artifact, manifest, EmbedderSettings(precision="int8", sub_batch_size=16)).embed(texts)
    cosine = cosine_per_row(batched.vectors, alone)
    return float(cosine.mean()), float(cosine.min())


def arena_probe(artifact: Path, mode: str) -> dict[str, float]:
    """In a fresh process: embed short, 256-token and mid-length batches in turn and
    report time and resident memory (the arena setting is per session, RSS per process)."""
    out = subprocess.run(
        [sys.executable, __file__, "--arena-probe", mode, "--artifact", str(artifact)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _arena_probe_main(artifact: Path, mode: str) -> None:
    from vectoros.core.embedder import EmbedderSettings, load_embedder
    from vectoros.core.manifest import Manifest

    model = load_embedder(artifact, Manifest.load(artifact), EmbedderSettings(precision="fp32", arena=mode))
    short = deal_like_texts(64, seed=1, min_words=5, max_words=30)
    long = deal_like_texts(64, seed=2, min_words=250, max_words=400)
    mid = deal_like_texts(64, seed=3, min_words=60, max_words=120)
    model.embed(short[:4])
    before = rss_mb()
    samples = []
    started = time.perf_counter()
    for _ in range(2):
        for batch in (short, long, mid, short):
            model.embed(batch)
            samples.append(rss_mb())
    print(json.dumps({
        "seconds": time.perf_counter() - started, "rss_before_mb": before,
        "rss_max_mb": max(samples), "rss_end_mb": samples[-1],
    }))


def engine_ceiling(artifact: Path, texts: list[str], processes: int = 2) -> float:
    """Texts/s of `processes` processes (one per core) each embedding its share of
    `texts` one text per call on one thread, started together: what the served
    int8 default could reach on this machine with no gRPC, batcher or client."""
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp:
        workers = []
        for index in range(processes):
            share = Path(tmp) / f"texts-{index}.json"
            share.write_text(json.dumps(texts[index::processes]))
            workers.append(subprocess.Popen(
                [sys.executable, __file__, "--ceiling-worker", str(share), "--artifact", str(artifact)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            ))
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:  # all loaded and warm: go
            worker.stdin.write("go\n")
            worker.stdin.flush()
        seconds = [float(worker.stdout.readline()) for worker in workers]
        for worker in workers:
            worker.wait(30)
    return len(texts) / max(seconds)


def _ceiling_worker_main(texts_file: Path, artifact: Path) -> None:
    from vectoros.core.embedder import EmbedderSettings, load_embedder
    from vectoros.core.manifest import Manifest

    texts = json.loads(texts_file.read_text())
    model = load_embedder(artifact, Manifest.load(artifact), EmbedderSettings(
        intra_op_threads=1, allow_spinning=False, overlap_session=False))
    model.embed(texts[:4])
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    for text in texts:
        model.embed([text])
    print(time.perf_counter() - started, flush=True)


# --- the server -------------------------------------------------------------------


def _serve_main(args: argparse.Namespace) -> None:
    import grpc

    from server.engines.embedding import BatcherConfig, DynamicBatcher
    from server.interceptors import ErrorAndLogInterceptor
    from server.models.registry import ModelRegistry
    from server.services.embedding import EmbeddingServicer, add_to_server
    from vectoros.core.embedder import EmbedderSettings, load_embedder

    async def run() -> None:
        settings = EmbedderSettings(precision=args.precision or None, intra_op_threads=args.threads,
                                    allow_spinning=bool(args.spin), overlap_session=bool(args.overlap),
                                    sub_batch_size=args.sub_batch or None)
        registry = ModelRegistry(args.models, {"embedder": functools.partial(load_embedder, settings=settings)})
        registry.refresh(notify=False)
        batcher = DynamicBatcher(BatcherConfig(
            max_batch_size=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=1024,
            cache_entries=args.cache, workers=args.workers,
        ))
        servicer = EmbeddingServicer(registry, batcher)
        server = grpc.aio.server(interceptors=[ErrorAndLogInterceptor()])
        add_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(json.dumps({"port": port}), flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(1.0)
        await servicer.close()

    asyncio.run(run())


class OfficialServer:
    """`vectoros serve` itself, with its default configuration."""

    def __init__(self, models: Path) -> None:
        from tests.support.serverproc import start_server

        self.process = start_server("--models", str(models), "--data-dir", str(models.parent / "data"),
                                    "--log-level", "WARNING", timeout=180)
        self.port = self.process.port
        self.pid = self.process.process.pid

    def close(self) -> None:
        self.process.terminate()


class Server:
    def __init__(self, models: Path, **options) -> None:
        argv = [sys.executable, __file__, "--serve", "--models", str(models)]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.port = json.loads(self.process.stdout.readline())["port"]
        self.pid = self.process.pid
        self.options = options

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


# --- the client -------------------------------------------------------------------


async def _embed_all(port: int, requests: list[list[str]], concurrency: int) -> tuple[float, list[float]]:
    """Send `requests` with `concurrency` callers; returns (seconds, per-call ms)."""
    import grpc

    from vectoros.v1 import embedding_pb2, embedding_pb2_grpc

    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        await stub.GetModelInfo(embedding_pb2.EmbeddingServiceGetModelInfoRequest())
        queue = iter(requests)

        async def caller() -> None:
            for texts in queue:
                started = time.perf_counter()
                await stub.Embed(embedding_pb2.EmbedRequest(texts=texts))
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def texts_per_second(port: int, requests: list[list[str]], concurrency: int) -> float:
    seconds, _ = asyncio.run(_embed_all(port, requests, concurrency))
    return sum(len(r) for r in requests) / seconds


def idle_latency(port: int, texts: list[str]) -> tuple[float, float]:
    _, latencies = asyncio.run(_embed_all(port, [[t] for t in texts], 1))
    return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))


# --- main -------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    # Internal modes: the server process and the arena probe.
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--spin", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--overlap", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-batch", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--sub-batch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=int, default=20_000, help=argparse.SUPPRESS)
    parser.add_argument("--arena-probe", default="", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--artifact", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve_main(args)
        return 0
    if args.arena_probe:
        _arena_probe_main(args.artifact, args.arena_probe)
        return 0
    if args.ceiling_worker:
        _ceiling_worker_main(args.ceiling_worker, args.artifact)
        return 0

    from server.models.publish import publish
    from vectoros.core.manifest import Manifest

    figures: dict[str, float] = {}
    artifact = cached_export(log=lambda message: print(f"  export: {message}", file=sys.stderr))
    manifest = Manifest.load(artifact)
    texts = deal_like_texts(args.texts, seed=SEED, min_words=20, max_words=120)
    others = deal_like_texts(args.texts, seed=SEED + 1, min_words=20, max_words=120)
    idle_texts = deal_like_texts(300, seed=SEED + 2, min_words=20, max_words=120)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(artifact / "tokenizer.json"))
    tokens = [len(e.ids) for e in tokenizer.encode_batch(texts)]
    print(f"{len(texts)} deal-like texts, {np.mean(tokens):.0f} tokens on average "
          f"(min {min(tokens)}, max {max(tokens)}); artifact default precision "
          f"{manifest.spec['default_precision']}; {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.1f}")

    with tempfile.TemporaryDirectory(prefix="bench-embedding-") as tmp:
        models = Path(tmp) / "models"
        publish(artifact, models)
        servers = {
            "vectoros serve": OfficialServer(models),
            "1 worker x 2 threads": Server(models, workers=1, threads=2, cache=0),
            "2 workers x 1 thread": Server(models, workers=2, threads=1, cache=0),
        }
        from training.embedder import load_reference

        reference = load_reference()
        reference.encode(texts[:64], batch_size=32)  # warm-up
        # Load on this machine comes and goes: every round measures the baseline
        # and each server on its own slice of the texts, and the ratios are taken
        # within a round.
        st_rates: list[float] = []
        splits: list[dict[str, float]] = []
        rates: dict[str, list[float]] = {}
        try:
            chunk = max(1, len(texts) // ROUNDS)
            for round_index in range(ROUNDS):
                part = texts[round_index * chunk:(round_index + 1) * chunk]
                other = others[round_index * chunk:(round_index + 1) * chunk]
                started = time.perf_counter()
                reference.encode(part, batch_size=32)
                st_rates.append(len(part) / (time.perf_counter() - started))
                rates.setdefault("engine ceiling: 2 processes x 1 thread, 1 text per call", []).append(
                    engine_ceiling(artifact, part))
                # Who runs first in a round runs on a machine the baseline has just
                # left: the order rotates so that no server keeps that place.
                order = list(servers)[round_index % len(servers):] + list(servers)[:round_index % len(servers)]
                for name in order:
                    server = servers[name]
                    with CpuSplit(server.pid) as split:
                        rates.setdefault(f"{name}: 32 callers x 1 text", []).append(
                            texts_per_second(server.port, [[t] for t in part], 32))
                    if name == "vectoros serve":
                        splits.append(split.shares)
                    rates.setdefault(f"{name}: 4 callers x 32 texts", []).append(
                        texts_per_second(server.port, [other[i:i + 32] for i in range(0, len(other), 32)], 4))
            st_rate = statistics.median(st_rates)
            figures["sentence_transformers_texts_per_second"] = st_rate
            print(f"\n{ROUNDS} rounds of {chunk} texts; medians; ratio = median of the per-round ratios")
            line("sentence-transformers in-process, encode(batch_size=32)", f"{st_rate:.1f} texts/s",
                 "rounds: " + ", ".join(f"{r:.0f}" for r in st_rates))
            print("engine ceiling: the int8 default in 2 processes at once, no gRPC, batcher or client. "
                  "Then the served Embed, int8 (the default), batcher 32 per batch / 2 ms wait. `vectoros serve` "
                  "runs its defaults: one worker per core, a lone call on all cores (spinning), calls under load "
                  "on one each, cache on (every text here is new); the variants have the cache off, no overlap "
                  "session and no spinning")
            for name, measured in rates.items():
                ratio = statistics.median(m / b for m, b in zip(measured, st_rates, strict=True))
                line(name, f"{statistics.median(measured):.1f} texts/s", f"{ratio:.2f}x sentence-transformers")
                figures[f"served {name}"] = statistics.median(measured)
                figures[f"served {name} ratio"] = ratio
            shares = {key: statistics.median(split[key] for split in splits) for key in splits[0]}
            line("where the 2 cores went, vectoros serve, 32 callers x 1 text",
                 f"{shares['machine_busy']:.0f}% busy",
                 f"model threads {shares['model_threads']:.0f}%, rest of the server {shares['server_rest']:.0f}%, "
                 f"client {shares['client']:.0f}% (of one core)")
            figures.update({f"served cpu {key}": value for key, value in shares.items()})
            del reference
            for name, server in servers.items():
                p50, p99 = idle_latency(server.port, idle_texts[:150])
                line(f"idle single-text call, {name}", f"p50 {p50:.1f} ms", f"p99 {p99:.1f} ms (target < 15)")
                figures[f"idle {name} p50_ms"], figures[f"idle {name} p99_ms"] = p50, p99
        finally:
            for server in servers.values():
                server.close()

        fp32 = Server(models, workers=2, threads=0, overlap=1, cache=0, precision="fp32")
        try:
            rate = texts_per_second(fp32.port, [[t] for t in texts[:400]], 32)
            line("fp32 graph served, 32 callers x 1 text", f"{rate:.1f} texts/s", f"{rate / st_rate:.2f}x")
            figures["served_single_fp32"] = rate
            p50, p99 = idle_latency(fp32.port, idle_texts[150:250])
            line("fp32 idle single-text call", f"p50 {p50:.1f} ms", f"p99 {p99:.1f} ms")
        finally:
            fp32.close()

        cached = Server(models, workers=2, threads=0, overlap=1, cache=20_000)
        try:
            repeat = [[t] for t in texts[:500]]
            first = texts_per_second(cached.port, repeat, 32)
            again = texts_per_second(cached.port, repeat, 32)
            line("cache on: 500 texts, first time", f"{first:.1f} texts/s")
            line("cache on: the same 500 texts again (unchanged)", f"{again:.1f} texts/s", f"{again / st_rate:.1f}x")
            figures["served_single_cached_repeat"] = again
        finally:
            cached.close()

    print("\nlevers, in-process (EmbedderModel.embed on 128 texts, best of 2 interleaved rounds)")
    for name, rate in engine_levers(artifact, texts[:128]).items():
        line(name, f"{rate:.1f} texts/s")
        figures[f"engine_{name}"] = rate
    mean, worst = int8_batch_dependence(artifact, texts[:128])
    line("int8, 16 per call vs 1 per call: cosine of the same text", f"mean {mean:.4f}", f"min {worst:.4f}")

    print("\nint8 activation scales, all 36 MatMuls quantized (128 texts; fidelity against the fp32 graph)")
    for name, result in quantization_lever(artifact, texts[:128]).items():
        line(name, f"{result['texts_per_second']:.1f} texts/s",
             f"cosine mean {result['vs_fp32_cosine_mean']:.4f} min {result['vs_fp32_cosine_min']:.4f}, "
             f"recall@10 {result['vs_fp32_recall_at_10']:.3f}; alone vs batched: min cosine "
             f"{result['batch_cosine_min']:.4f}")
        figures[f"quantization {name}"] = result["texts_per_second"]

    print("\nmemory arena, fp32, 16 per call, batches of short / 256-token / mid texts (fresh process each)")
    for mode in ("shrink", "keep", "off"):
        probe = arena_probe(artifact, mode)
        line(f"arena={mode}", f"{probe['seconds']:.1f} s",
             f"RSS {probe['rss_before_mb']:.0f} -> max {probe['rss_max_mb']:.0f}, end {probe['rss_end_mb']:.0f} MB")
        figures[f"arena_{mode}_rss_max_mb"] = probe["rss_max_mb"]
        figures[f"arena_{mode}_seconds"] = probe["seconds"]

    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
