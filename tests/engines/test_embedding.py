"""The dynamic batcher (`server.engines.embedding`): concurrency, overload, cache
and version isolation, over the real exported model (training.embedder.cached_export)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from server.engines.embedding import BatcherConfig, DynamicBatcher
from training.embedder import cached_export, deal_like_texts
from vectoros.core.embedder import EmbedderSettings, load_embedder
from vectoros.core.errors import Overloaded, Unavailable
from vectoros.core.manifest import Manifest

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)


@pytest.fixture(scope="module")
def artifact() -> Path:
    return cached_export()


@pytest.fixture(scope="module")
def manifest(artifact) -> Manifest:
    return Manifest.load(artifact)


@pytest.fixture(scope="module")
def fp32(artifact, manifest):
    return load_embedder(artifact, manifest, EmbedderSettings(precision="fp32"))


@pytest.fixture(scope="module")
def int8(artifact, manifest):
    return load_embedder(artifact, manifest, EmbedderSettings(precision="int8"))


@pytest.fixture(scope="module")
def served(artifact, manifest):
    return load_embedder(artifact, manifest)


# --- the batcher --------------------------------------------------------------------


async def test_concurrent_single_text_calls_share_model_calls(served):
    texts = deal_like_texts(48, seed=21)
    expected = served.embed(texts).vectors
    batcher = DynamicBatcher(BatcherConfig(max_batch_size=16, max_wait_ms=20, cache_entries=0))
    try:
        results = await asyncio.gather(*(batcher.embed(served, [text]) for text in texts))
    finally:
        await batcher.close()
    vectors = np.vstack([result.vectors for result in results])
    assert np.allclose(vectors, expected, atol=1e-5)
    assert batcher.stats.batched_texts == 48
    assert batcher.stats.batches < 12  # 48 callers shared a few model calls (16 texts at most each)
    assert all(len(result) == 1 for result in results)


async def test_multi_text_requests_keep_their_order(served):
    texts = deal_like_texts(30, seed=22)
    batcher = DynamicBatcher(BatcherConfig(max_batch_size=8, max_wait_ms=5, cache_entries=0))
    try:
        parts = await asyncio.gather(*(batcher.embed(served, texts[i : i + 10]) for i in range(0, 30, 10)))
    finally:
        await batcher.close()
    assert np.allclose(np.vstack([p.vectors for p in parts]), served.embed(texts).vectors, atol=1e-5)
    assert np.concatenate([p.token_counts for p in parts]).tolist() == served.embed(texts).token_counts.tolist()


async def test_full_queue_is_refused_at_once(served):
    batcher = DynamicBatcher(BatcherConfig(max_batch_size=1, max_wait_ms=0, max_queue=4, cache_entries=0))
    texts = deal_like_texts(20, seed=23)
    try:
        # All 20 calls enqueue before the worker runs once: 4 fit, 16 are refused.
        outcomes = await asyncio.gather(*(batcher.embed(served, [text]) for text in texts), return_exceptions=True)
    finally:
        await batcher.close()
    refused = [o for o in outcomes if isinstance(o, Overloaded)]
    assert len(refused) == 16 and batcher.stats.rejected == 16
    assert all(not isinstance(o, BaseException) for o in outcomes[:4])
    assert "queue is full" in refused[0].message


async def test_a_request_larger_than_the_queue_runs_when_the_queue_is_empty(served):
    batcher = DynamicBatcher(BatcherConfig(max_batch_size=8, max_queue=4, cache_entries=0))
    try:
        result = await batcher.embed(served, deal_like_texts(10, seed=24))
    finally:
        await batcher.close()
    assert len(result) == 10


async def test_cache_answers_unchanged_text_without_the_model(served):
    batcher = DynamicBatcher(BatcherConfig(cache_entries=100))
    texts = deal_like_texts(5, seed=25)
    try:
        first = await batcher.embed(served, texts)
        calls = batcher.stats.batches
        second = await batcher.embed(served, [texts[3], "a new text", texts[0]])
    finally:
        await batcher.close()
    assert batcher.stats.cache_hits == 2
    assert batcher.stats.batched_texts == 6 and batcher.stats.batches == calls + 1
    assert np.array_equal(second.vectors[0], first.vectors[3])
    assert np.array_equal(second.vectors[2], first.vectors[0])
    assert second.token_counts[0] == first.token_counts[3]


async def test_cache_is_bounded_and_per_model(fp32, int8):
    batcher = DynamicBatcher(BatcherConfig(cache_entries=3))
    texts = deal_like_texts(4, seed=26)
    try:
        await batcher.embed(fp32, texts)  # 4 texts, the first is evicted
        await batcher.embed(fp32, texts[1:])
        assert batcher.stats.cache_hits == 3
        other = await batcher.embed(int8, texts[1:2])  # another model's vectors are not reused
        assert batcher.stats.cache_hits == 3
    finally:
        await batcher.close()
    assert np.allclose(other.vectors, int8.embed(texts[1:2]).vectors, atol=1e-5)


async def test_requests_for_two_models_never_share_a_call(fp32, int8):
    # As during a version swap: requests that took the old model and requests that
    # took the new one are in the queue together.
    texts = deal_like_texts(16, seed=27)
    batcher = DynamicBatcher(BatcherConfig(max_batch_size=32, max_wait_ms=20, cache_entries=0))
    models = [fp32 if i % 2 else int8 for i in range(16)]
    try:
        results = await asyncio.gather(*(batcher.embed(m, [t]) for m, t in zip(models, texts, strict=True)))
    finally:
        await batcher.close()
    for model, text, result in zip(models, texts, results, strict=True):
        assert np.allclose(result.vectors, model.embed([text]).vectors, atol=1e-5)


async def test_a_cancelled_caller_does_not_disturb_the_others(served):
    batcher = DynamicBatcher(BatcherConfig(max_batch_size=4, max_wait_ms=50, cache_entries=0))
    texts = deal_like_texts(6, seed=28)
    try:
        tasks = [asyncio.create_task(batcher.embed(served, [text])) for text in texts]
        await asyncio.sleep(0)
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await batcher.close()
    assert isinstance(done[1], asyncio.CancelledError)
    assert batcher.stats.batched_texts == 5
    for index in (0, 2, 3, 4, 5):
        assert np.allclose(done[index].vectors, served.embed([texts[index]]).vectors, atol=1e-5)


async def test_closing_fails_queued_requests_and_refuses_new_ones(served):
    batcher = DynamicBatcher(BatcherConfig(max_batch_size=1, max_wait_ms=0, cache_entries=0))
    pending = [asyncio.create_task(batcher.embed(served, [text])) for text in deal_like_texts(4, seed=29)]
    await asyncio.sleep(0)
    await batcher.close()
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert any(isinstance(o, Unavailable) for o in outcomes)
    with pytest.raises(Unavailable):
        await batcher.embed(served, ["late"])
