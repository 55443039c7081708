"""The embedder model: one ONNX graph (encoder + mean pooling + L2 normalisation,
exported by `training.embedder`) and its tokenizer (the `tokenizers` library,
truncation at 256 tokens, no fixed padding), run by onnxruntime.

`EmbedderModel.embed(texts)` is synchronous: it tokenizes, sorts the texts by
token count and runs sub-batches of similar length, so padding stays small
whatever order the texts came in. `load_embedder(directory, manifest)` is the
model registry's loader for the manifest kind "embedder": it validates `spec`
strictly and builds the session once. Serving batches requests across callers
(`server.engines.embedding`); training measures fidelity and speed with the
same class at export.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vectoros.core.embedder.spec import INPUT_NAMES, OUTPUT_NAME, parse_spec, spec_error


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
        raise spec_error("precisions", f"the artifact has no {precision!r} graph")
    if not spec.precisions[precision].meets_bar:
        raise spec_error(f"precisions.{precision}", "did not meet its fidelity bar; refusing to serve it")
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
