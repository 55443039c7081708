"""Sentence embeddings: all-MiniLM-L6-v2 run by onnxruntime, batched across requests.

Three parts, from the model up:

- `EmbedderModel`: one ONNX graph (encoder + mean pooling + L2 normalisation,
  exported by `training.embedder`) and its tokenizer (the `tokenizers` library,
  truncation at 256 tokens, no fixed padding). `embed(texts)` is synchronous:
  it tokenizes, sorts the texts by token count and runs sub-batches of similar
  length, so padding stays small whatever order the texts came in.
- `load_embedder(directory, manifest)`: the model registry's loader for the
  manifest kind "embedder"; validates `spec` strictly and builds the session once.
- `DynamicBatcher` (asyncio): collects texts from concurrent requests into one
  model call of at most `max_batch_size` texts, waiting at most `max_wait_ms`
  for a batch to fill; a bounded queue answers `Overloaded` at once when full;
  an LRU cache keyed by (model fingerprint, SHA-256 of the text) skips texts
  embedded before.

No grpc and no torch here: the servicer translates, the tests and the
benchmark call this module directly.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vectoros.core.errors import InvalidInput, Overloaded, Unavailable

log = logging.getLogger("vectoros.embedding")

KIND = "embedder"
PRECISIONS = ("fp32", "int8")
# Request limits (embedding.proto): 1-256 texts, each at most 32 KiB of UTF-8.
MAX_TEXTS = 256
MAX_TEXT_BYTES = 32 * 1024
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "sentence_embedding"


# --- validation -------------------------------------------------------------------


def check_texts(texts: Sequence[str | bytes], field_name: str = "texts") -> list[str]:
    """Validate a request's texts and return them as `str`.

    Accepts `str` (a Python caller; a lone surrogate is not UTF-8) or `bytes`
    (the wire, before decoding). Raises `InvalidInput` naming the index:
    ``texts[3]: at most 32768 bytes of UTF-8, got 40000``. Empty strings are valid.
    """
    if not 1 <= len(texts) <= MAX_TEXTS:
        raise InvalidInput(field_name, f"must hold 1 to {MAX_TEXTS} texts, got {len(texts)}")
    checked = []
    for index, text in enumerate(texts):
        where = f"{field_name}[{index}]"
        if isinstance(text, bytes):
            if len(text) > MAX_TEXT_BYTES:
                raise InvalidInput(where, f"at most {MAX_TEXT_BYTES} bytes of UTF-8, got {len(text)}")
            try:
                checked.append(text.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InvalidInput(where, f"not valid UTF-8 (bad byte at offset {exc.start})") from None
            continue
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidInput(where, f"not valid UTF-8 (lone surrogate at character {exc.start})") from None
        if size > MAX_TEXT_BYTES:
            raise InvalidInput(where, f"at most {MAX_TEXT_BYTES} bytes of UTF-8, got {size}")
        checked.append(text)
    return checked


# --- the artifact's spec ----------------------------------------------------------


@dataclass(frozen=True)
class PrecisionSpec:
    file: str
    meets_bar: bool
    bar: Mapping[str, float]


@dataclass(frozen=True)
class EmbedderSpec:
    """`spec` of an embedder manifest (written by `training.embedder`)."""

    dimension: int
    max_tokens: int
    tokenizer: str
    default_precision: str
    precisions: Mapping[str, PrecisionSpec]
    source: Mapping[str, str]
    pooling: str = "mean"
    normalize: str = "l2"


_SPEC_KEYS = (
    "dimension", "max_tokens", "tokenizer", "pooling", "normalize", "default_precision", "precisions", "source",
)


def _spec_fail(key: str, rule: str) -> Exception:
    from vectoros.core.manifest import ManifestError

    return ManifestError(f"spec.{key}: {rule}")


def parse_spec(manifest: Any) -> EmbedderSpec:
    """Validate an embedder manifest's `spec` strictly: exactly the known keys, the
    pooling this engine implements, every precision's file listed in `files`, and
    a default precision that met its fidelity bar. Raises `ManifestError`."""
    if manifest.kind != KIND:
        raise _spec_fail("kind", f"the embedder loader needs kind {KIND!r}, got {manifest.kind!r}")
    spec = manifest.spec
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    missing = [key for key in _SPEC_KEYS if key not in spec]
    if unknown:
        raise _spec_fail(unknown[0], "unknown key")
    if missing:
        raise _spec_fail(missing[0], "missing key")
    for key in ("dimension", "max_tokens"):
        value = spec[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _spec_fail(key, "must be a positive integer")
    if spec["pooling"] != "mean":
        raise _spec_fail("pooling", f"only 'mean' is implemented, got {spec['pooling']!r}")
    if spec["normalize"] != "l2":
        raise _spec_fail("normalize", f"only 'l2' is implemented, got {spec['normalize']!r}")
    if spec["tokenizer"] not in manifest.files:
        raise _spec_fail("tokenizer", f"{spec['tokenizer']!r} is not listed in files")
    if not isinstance(spec["source"], dict) or not all(isinstance(v, str) for v in spec["source"].values()):
        raise _spec_fail("source", "must be an object of strings")
    precisions = spec["precisions"]
    if not isinstance(precisions, dict) or not precisions:
        raise _spec_fail("precisions", "must be a non-empty object")
    parsed = {}
    for name, entry in precisions.items():
        key = f"precisions.{name}"
        if name not in PRECISIONS:
            raise _spec_fail(key, f"unknown precision; known: {', '.join(PRECISIONS)}")
        if not isinstance(entry, dict) or set(entry) != {"file", "meets_bar", "bar"}:
            raise _spec_fail(key, 'must be {"file": str, "meets_bar": bool, "bar": {metric: number}}')
        if entry["file"] not in manifest.signature:
            raise _spec_fail(f"{key}.file", f"{entry['file']!r} is not an ONNX file of the manifest")
        if not isinstance(entry["meets_bar"], bool):
            raise _spec_fail(f"{key}.meets_bar", "must be true or false")
        if not isinstance(entry["bar"], dict):
            raise _spec_fail(f"{key}.bar", "must be an object")
        _check_signature(manifest.signature[entry["file"]], spec["dimension"], f"{key}.file")
        parsed[name] = PrecisionSpec(entry["file"], entry["meets_bar"], dict(entry["bar"]))
    default = spec["default_precision"]
    if default not in parsed:
        raise _spec_fail("default_precision", f"{default!r} is not one of precisions")
    if not parsed[default].meets_bar:
        raise _spec_fail("default_precision", f"{default!r} did not meet its fidelity bar")
    return EmbedderSpec(
        dimension=spec["dimension"],
        max_tokens=spec["max_tokens"],
        tokenizer=spec["tokenizer"],
        default_precision=default,
        precisions=parsed,
        source=dict(spec["source"]),
    )


def _check_signature(signature: Mapping[str, Any], dimension: int, key: str) -> None:
    inputs = [(t["name"], t["dtype"]) for t in signature["inputs"]]
    if inputs != [(name, "int64") for name in INPUT_NAMES]:
        raise _spec_fail(key, f"the graph must take int64 {', '.join(INPUT_NAMES)}, it takes {inputs}")
    outputs = signature["outputs"]
    if [t["name"] for t in outputs] != [OUTPUT_NAME] or outputs[0]["dtype"] != "float32":
        raise _spec_fail(key, f"the graph must output float32 {OUTPUT_NAME}")
    if outputs[0]["shape"][-1:] != [dimension]:
        raise _spec_fail(key, f"{OUTPUT_NAME} must have {dimension} columns, the graph says {outputs[0]['shape']}")


# --- the model --------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedderSettings:
    """How the server runs an embedder (not part of the artifact).

    `intra_op_threads` 0 means one per core. `sub_batch_size` and
    `max_batch_tokens` bound one session call (texts, and padded tokens: memory
    grows with batch x length, and attention with length squared).

    `sub_batch_size` None picks by precision: 16 for fp32; 1 for int8. The
    int8 graph scales activations per token (`training.rowquant`), so its
    vectors are the same however texts are grouped (tested); one text per call
    is a speed choice: on one thread int8 gains nothing from batching, and a
    lone text then never waits for company in the batcher.
    `allow_spinning` lets the multi-threaded session's threads spin instead of
    sleeping between steps (the single-threaded overlap session never spins):
    ~1.3x for a lone int8 call on an idle machine, but 2x slower when other
    work wants the cores. With the overlap session and the batcher's `busy`
    hint, that session runs only calls that start with nothing else queued or
    running, so it spins by default (served, 3 interleaved rounds: idle
    single-text p50 10-12 ms vs 13-16 ms, p99 18-21 ms vs 25-29 ms, the same
    texts/s under 32 callers). Without the overlap session, leave it off.

    `arena` decides memory under varying input lengths:
    "shrink" (default): onnxruntime's arena serves each call, and whatever it
    grew beyond its first chunk is released when the call ends, so resident
    memory stays flat (bench/bench_embedding.py, fp32, 16 per call through
    short, 256-token and mid-length batches: RSS 184 -> at most 211 MB);
    "keep": the arena keeps the peak of the largest call for the session's life
    (209 -> 371 MB in the same run; 1.3-1.6 GiB after one batch of 256 long texts);
    "off": plain malloc per tensor; memory swings (up to 485 MB) and every
    call touches fresh pages, which costs 3-4 ms per MB on these virtual
    machines (slowest of the three: 12.7 s vs 9.4 s for "shrink").

    `graph_optimization`: onnxruntime's level ("all", "extended", "basic",
    "none"), a benchmark lever; serving uses "all".

    `overlap_session`: keep a second, single-threaded session for calls that
    start while another call runs or more texts wait (the batcher says so with
    `embed(..., busy=True)`). A lone call then gets every core (lowest latency
    when idle) and calls under load get one core each instead of fighting over
    one thread pool (best throughput). Costs a second copy of the weights in
    memory.
    """

    precision: str | None = None
    intra_op_threads: int = 0
    sub_batch_size: int | None = None
    max_batch_tokens: int = 4096
    allow_spinning: bool = True
    arena: str = "shrink"
    graph_optimization: str = "all"
    overlap_session: bool = True


@dataclass(frozen=True)
class EmbedBatchResult:
    """Vectors in input order: `vectors` float32 [n, dimension] (unit length),
    `token_counts` int32 [n] (after truncation, with [CLS] and [SEP]),
    `truncated` bool [n] (the text was longer than the model's limit)."""

    vectors: np.ndarray
    token_counts: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.token_counts)


@dataclass(frozen=True)
class Tokenized:
    ids: list[np.ndarray]
    token_counts: np.ndarray
    truncated: np.ndarray


class EmbedderModel:
    """One embedder graph with its tokenizer. Thread-safe: onnxruntime sessions
    accept concurrent `run` calls, and the tokenizer is read-only."""

    def __init__(
        self,
        onnx_path: str | os.PathLike[str],
        tokenizer_path: str | os.PathLike[str],
        *,
        precision: str,
        dimension: int,
        max_tokens: int,
        settings: EmbedderSettings | None = None,
        name: str = "embedder",
        version: int | None = None,
        fingerprint: str | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.settings = settings or EmbedderSettings()
        self.sub_batch_size = self.settings.sub_batch_size or (1 if precision == "int8" else 16)
        if self.sub_batch_size < 1 or self.settings.max_batch_tokens < max_tokens:
            raise ValueError("sub_batch_size must be >= 1 and max_batch_tokens >= max_tokens")
        self.name = name
        self.version = version
        self.precision = precision
        self.dimension = dimension
        self.max_tokens = max_tokens
        # Identifies the weights for the vector cache, whatever the version number.
        self.fingerprint = fingerprint or f"{Path(onnx_path).resolve()}:{os.stat(onnx_path).st_mtime_ns}"

        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # The file may pad and truncate at 128 (the model's shipped default);
        # sentence-transformers uses 256 and pads only to the longest in a batch.
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()

        if self.settings.arena not in ("shrink", "keep", "off"):
            raise ValueError(f"arena must be shrink, keep or off, got {self.settings.arena!r}")
        self.session = self._session(ort, onnx_path, self.settings.intra_op_threads, self.settings.allow_spinning)
        # A second, single-threaded session for calls that overlap another call:
        # see `EmbedderSettings.overlap_session`.
        self._overlap_session = self._session(ort, onnx_path, 1, False) if self.settings.overlap_session else None
        self._running = 0
        self._running_lock = threading.Lock()
        self._run_options = ort.RunOptions()
        if self.settings.arena == "shrink":
            self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != list(INPUT_NAMES) or outputs != [OUTPUT_NAME]:
            raise ValueError(
                f"{onnx_path}: expected inputs {INPUT_NAMES} and output {OUTPUT_NAME}, got {inputs} {outputs}"
            )

    def _session(self, ort, onnx_path, threads: int, spinning: bool):
        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = self.settings.arena != "off"
        options.enable_mem_pattern = False  # shapes change every call
        levels = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
        if self.settings.graph_optimization not in levels:
            raise ValueError(f"graph_optimization must be one of {', '.join(levels)}")
        options.graph_optimization_level = levels[self.settings.graph_optimization]
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.log_severity_level = 3
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def __repr__(self) -> str:
        return f"EmbedderModel({self.name} v{self.version} {self.precision})"

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        encodings = self.tokenizer.encode_batch(list(texts)) if len(texts) > 1 else [self.tokenizer.encode(texts[0])]
        ids = [np.asarray(encoding.ids, dtype=np.int64) for encoding in encodings]
        return Tokenized(
            ids=ids,
            token_counts=np.fromiter((len(row) for row in ids), dtype=np.int32, count=len(ids)),
            # With stride 0, the tokenizer keeps what it cut as overflowing encodings.
            truncated=np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(ids)),
        )

    def embed(self, texts: Sequence[str], *, busy: bool = False) -> EmbedBatchResult:
        """Embed `texts` (already validated) in one call; order is kept. `busy`: the
        caller knows more work is queued or running (the batcher does), so this call
        takes one core even if it starts alone (see `EmbedderSettings.overlap_session`)."""
        if not texts:
            return EmbedBatchResult(
                np.empty((0, self.dimension), np.float32), np.empty(0, np.int32), np.empty(0, bool)
            )
        tokens = self.tokenize(texts)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for rows in self.plan(tokens.token_counts):
            vectors[rows] = self.run_padded([tokens.ids[row] for row in rows], busy=busy)
        return EmbedBatchResult(vectors, tokens.token_counts, tokens.truncated)

    def plan(self, token_counts: np.ndarray, *, sort: bool = True) -> list[np.ndarray]:
        """Sub-batches (row indices) for one call: sorted by token count so each
        sub-batch pads to a length close to all of its texts', at most
        `sub_batch_size` texts and `max_batch_tokens` padded tokens each."""
        order = np.argsort(token_counts, kind="stable") if sort else np.arange(len(token_counts))
        batches: list[np.ndarray] = []
        start = 0
        longest = 0
        for position, row in enumerate(order.tolist()):
            size = position - start + 1
            longest = max(longest, int(token_counts[row]))
            if size > self.sub_batch_size or size * longest > self.settings.max_batch_tokens:
                batches.append(order[start:position])
                start, longest = position, int(token_counts[row])
        batches.append(order[start:])
        return batches

    def run_padded(self, ids: Sequence[np.ndarray], *, busy: bool = False) -> np.ndarray:
        """Pad token id rows to the longest and run the graph: float32 [len(ids), dimension]."""
        length = max(len(row) for row in ids)
        input_ids = np.zeros((len(ids), length), dtype=np.int64)
        attention_mask = np.zeros((len(ids), length), dtype=np.int64)
        for index, row in enumerate(ids):
            input_ids[index, : len(row)] = row
            attention_mask[index, : len(row)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        session = self.session
        if self._overlap_session is not None:
            with self._running_lock:
                self._running += 1
                if self._running > 1 or busy:
                    session = self._overlap_session
        try:
            (vectors,) = session.run([OUTPUT_NAME], feeds, self._run_options)
        finally:
            if self._overlap_session is not None:
                with self._running_lock:
                    self._running -= 1
        return vectors


def load_embedder(directory: Path, manifest: Any, settings: EmbedderSettings | None = None) -> EmbedderModel:
    """The registry's loader for kind "embedder": validate `spec`, pick the
    precision (the artifact's default unless `settings.precision` names another
    one that met its bar) and build the session. Fails loudly at load."""
    spec = parse_spec(manifest)
    settings = settings or EmbedderSettings()
    precision = settings.precision or spec.default_precision
    if precision not in spec.precisions:
        raise _spec_fail("precisions", f"the artifact has no {precision!r} graph")
    if not spec.precisions[precision].meets_bar:
        raise _spec_fail(f"precisions.{precision}", "did not meet its fidelity bar; refusing to serve it")
    filename = spec.precisions[precision].file
    return EmbedderModel(
        Path(directory) / filename,
        Path(directory) / spec.tokenizer,
        precision=precision,
        dimension=spec.dimension,
        max_tokens=spec.max_tokens,
        settings=settings,
        name=manifest.name,
        version=manifest.version,
        fingerprint=manifest.files[filename]["sha256"],
    )


# --- dynamic batching -------------------------------------------------------------


@dataclass(frozen=True)
class BatcherConfig:
    """`max_batch_size`: texts per model call. `max_wait_ms`: how long the first
    text of a batch waits for others (not at all for a model that runs texts
    one by one, such as int8: see `EmbedderSettings`). `max_queue`: texts waiting before new
    requests are refused (a request of up to 256 texts is always let into an
    empty queue). `cache_entries`: vectors kept (~1.6 KB each); 0 turns the
    cache off. `workers`: model calls running at once (each in its own thread);
    one per core, so that with `EmbedderSettings.overlap_session` a lone call
    gets every core and concurrent calls get one each (measured on 2 cores,
    32 callers, int8: 2 workers ~1.5x the texts/s of 1 worker with 2 threads)."""

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    cache_entries: int = 20_000
    workers: int = max(1, os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_queue < 1 or self.workers < 1 or self.cache_entries < 0:
            raise ValueError(f"invalid batcher config {self}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


@dataclass
class BatcherStats:
    """Counters since start: requests and texts asked for, texts answered from the
    cache, model calls (`batches`) and the texts they held, requests refused."""

    requests: int = 0
    texts: int = 0
    cache_hits: int = 0
    batches: int = 0
    batched_texts: int = 0
    rejected: int = 0


class _Request:
    __slots__ = ("future", "vectors", "token_counts", "truncated", "remaining")

    def __init__(self, future: asyncio.Future, count: int, dimension: int) -> None:
        self.future = future
        self.vectors = np.empty((count, dimension), dtype=np.float32)
        self.token_counts = np.empty(count, dtype=np.int32)
        self.truncated = np.empty(count, dtype=bool)
        self.remaining = 0

    def result(self) -> EmbedBatchResult:
        return EmbedBatchResult(self.vectors, self.token_counts, self.truncated)


@dataclass(frozen=True)
class _Item:
    request: _Request
    position: int
    text: str
    key: tuple[str, bytes]
    model: EmbedderModel
    enqueued: float  # event-loop time


@dataclass(frozen=True)
class _Cached:
    vector: np.ndarray
    token_count: int
    truncated: bool


class DynamicBatcher:
    """Batches texts from concurrent `embed` calls into few model calls.

    Each request names the model it was routed to, so a version swap never
    moves a request in flight to another model: a batch holds texts of one
    model only, and a model stays alive while a batch of it is queued. Use one
    batcher per process (the queue bound is then the process's bound).
    """

    def __init__(self, config: BatcherConfig | None = None) -> None:
        self.config = config or BatcherConfig()
        self.stats = BatcherStats()
        self._pending: deque[_Item] = deque()
        self._cache: OrderedDict[tuple[str, bytes], _Cached] = OrderedDict()
        self._executor: ThreadPoolExecutor | None = None
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []
        # Requests not yet answered, so that close() can answer them all.
        self._outstanding: set[_Request] = set()
        self._calls = 0  # model calls running
        self._closed = False

    @property
    def queued(self) -> int:
        """Texts waiting for a model call."""
        return len(self._pending)

    def _start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="embedder")
        self._workers = [
            asyncio.get_running_loop().create_task(self._work(), name=f"embed-batcher-{i}")
            for i in range(self.config.workers)
        ]

    async def embed(self, model: EmbedderModel, texts: Sequence[str]) -> EmbedBatchResult:
        """Embed validated texts with `model`, sharing model calls with concurrent
        callers. Raises `Overloaded` at once when the queue is full."""
        if self._closed:
            raise Unavailable("the embedder is shutting down")
        if not self._workers:
            self._start()
        loop = asyncio.get_running_loop()
        request = _Request(loop.create_future(), len(texts), model.dimension)
        self.stats.requests += 1
        self.stats.texts += len(texts)
        misses: list[tuple[int, tuple[str, bytes]]] = []
        for position, text in enumerate(texts):
            key = (model.fingerprint, hashlib.sha256(text.encode("utf-8")).digest())
            cached = self._cache.get(key)
            if cached is None:
                misses.append((position, key))
                continue
            self._cache.move_to_end(key)
            request.vectors[position] = cached.vector
            request.token_counts[position] = cached.token_count
            request.truncated[position] = cached.truncated
        self.stats.cache_hits += len(texts) - len(misses)
        if not misses:
            return request.result()
        if self._pending and len(self._pending) + len(misses) > self.config.max_queue:
            self.stats.rejected += 1
            raise Overloaded(
                f"texts: the embedding queue is full ({len(self._pending)} texts waiting, "
                f"limit {self.config.max_queue}); retry with backoff"
            )
        request.remaining = len(misses)
        now = loop.time()
        for position, key in misses:
            self._pending.append(_Item(request, position, texts[position], key, model, now))
        assert self._wakeup is not None
        self._wakeup.set()
        self._outstanding.add(request)
        try:
            # A cancelled caller cancels the future; its queued texts are then skipped.
            await request.future
        finally:
            self._outstanding.discard(request)
        return request.result()

    def _take(self) -> list[_Item]:
        limit = self.config.max_batch_size
        if self.config.workers > 1 and self._pending:
            # Leave work for the other workers, but never less than what the
            # model runs in one session call.
            share = -(-len(self._pending) // self.config.workers)
            limit = min(limit, max(self._pending[0].model.sub_batch_size, share))
        batch: list[_Item] = []
        model = None
        while self._pending and len(batch) < limit:
            item = self._pending[0]
            if item.request.future.done():  # caller went away
                self._pending.popleft()
                continue
            if model is not None and item.model is not model:
                break  # one model per call; the next batch takes the other model
            model = item.model
            batch.append(self._pending.popleft())
        return batch

    async def _wait_for_batch(self) -> None:
        assert self._wakeup is not None
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        if len(self._pending) >= self.config.max_batch_size or self.config.max_wait_ms <= 0:
            return
        if self._pending[0].model.sub_batch_size == 1:
            return  # the model runs texts one by one: waiting for company gains nothing
        loop = asyncio.get_running_loop()
        # The wait counts from when the oldest text arrived: texts left over by
        # another worker's batch have waited already.
        deadline = self._pending[0].enqueued + self.config.max_wait_ms / 1000
        while len(self._pending) < self.config.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_batch()
            batch = self._take()
            if not batch:
                continue
            model = batch[0].model
            # Texts still queued, or another call running: this call gets one core.
            busy = bool(self._pending) or self._calls > 0
            self._calls += 1
            try:
                result = await loop.run_in_executor(
                    self._executor, functools.partial(model.embed, [item.text for item in batch], busy=busy)
                )
            except Exception as exc:  # the callers get it; the interceptor logs it
                for item in batch:
                    if not item.request.future.done():
                        item.request.future.set_exception(exc)
                continue
            finally:
                self._calls -= 1
            self.stats.batches += 1
            self.stats.batched_texts += len(batch)
            for row, item in enumerate(batch):
                self._remember(item.key, result, row)
                request = item.request
                if request.future.done():
                    continue
                request.vectors[item.position] = result.vectors[row]
                request.token_counts[item.position] = result.token_counts[row]
                request.truncated[item.position] = result.truncated[row]
                request.remaining -= 1
                if request.remaining == 0:
                    request.future.set_result(None)

    def _remember(self, key: tuple[str, bytes], result: EmbedBatchResult, row: int) -> None:
        if self.config.cache_entries == 0:
            return
        self._cache[key] = _Cached(
            result.vectors[row].copy(), int(result.token_counts[row]), bool(result.truncated[row])
        )
        self._cache.move_to_end(key)
        while len(self._cache) > self.config.cache_entries:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    async def close(self) -> None:
        """Stop the workers; requests still queued fail with `Unavailable`."""
        self._closed = True
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._pending.clear()
        for request in list(self._outstanding):  # queued, or in a call that was abandoned
            if not request.future.done():
                request.future.set_exception(Unavailable("the embedder is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
