"""Embedding engine: the exported model against sentence-transformers, validation,
the dynamic batcher (concurrency, overload, cache, version isolation), and the
deal-to-text template. Uses the cached export (training.embedder.cached_export)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from server.engines.embedding import (
    MAX_TEXT_BYTES,
    MAX_TEXTS,
    BatcherConfig,
    DynamicBatcher,
    EmbedderSettings,
    check_texts,
    load_embedder,
    parse_spec,
)
from training.embedder import cached_export, cached_reference, cosine_per_row, deal_like_texts
from vectoros.core.deal_text import TEMPLATE_VERSION, VALUE_BANDS, deal_to_text, value_band
from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.errors import InvalidInput, Overloaded, Unavailable
from vectoros.core.manifest import Manifest, ManifestError

LONG = deal_like_texts(1, seed=11, min_words=500, max_words=500)[0]
MIXED = ["", "renewal", "Müller GmbH – Pilot in Zürich, Budget freigegeben", LONG, *deal_like_texts(12, seed=12)]


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


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return cached_reference(MIXED)


# --- the model ---------------------------------------------------------------------


def test_fp32_matches_sentence_transformers(fp32, reference):
    result = fp32.embed(MIXED)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (len(MIXED), 384)
    assert cosine_per_row(result.vectors, reference).min() > 0.9999
    assert np.allclose(result.vectors, reference, atol=1e-4)


def test_int8_stays_close_to_sentence_transformers(int8, reference):
    cosine = cosine_per_row(int8.embed(MIXED).vectors, reference)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.97


def test_served_precision_is_the_artifacts_default(served, manifest):
    assert served.precision == manifest.spec["default_precision"]
    assert (served.name, served.version) == ("embedder", None)


def test_truncation_is_reported_and_counts_tokens(fp32):
    result = fp32.embed(["", "renewal", LONG])
    assert result.token_counts.tolist()[:2] == [2, 3]  # [CLS] [SEP], [CLS] renewal [SEP]
    assert result.token_counts[2] == 256
    assert result.truncated.tolist() == [False, False, True]


def test_empty_string_embeds_to_a_unit_vector(served):
    result = served.embed([""])
    assert np.isclose(np.linalg.norm(result.vectors[0]), 1.0, atol=1e-5)


def test_order_does_not_change_vectors(fp32, int8):
    texts = deal_like_texts(24, seed=13)
    for model in (fp32, int8):
        forward = model.embed(texts).vectors
        backward = model.embed(texts[::-1]).vectors[::-1]
        alone = np.vstack([model.embed([text]).vectors for text in texts[:6]])
        assert np.allclose(forward, backward, atol=1e-5)
        assert np.allclose(forward[:6], alone, atol=1e-5)


def test_int8_vector_does_not_depend_on_its_batch(artifact, manifest):
    # One activation scale per token: a text's vector is the same alone, in a
    # batch of 16 with padding, and beside a very long text.
    batched = load_embedder(artifact, manifest, EmbedderSettings(precision="int8", sub_batch_size=16))
    texts = deal_like_texts(15, seed=21) + ["outlier " * 300]
    together = batched.embed(texts).vectors
    alone = np.vstack([batched.embed([text]).vectors for text in texts])
    assert np.abs(together - alone).max() < 1e-5


def test_overlapping_calls_give_the_same_vectors_as_lone_ones(fp32, int8):
    # Two threads at once: the second call runs on the single-threaded overlap session.
    from concurrent.futures import ThreadPoolExecutor

    texts = deal_like_texts(16, seed=14)
    for model in (fp32, int8):
        alone = model.embed(texts).vectors
        with ThreadPoolExecutor(2) as pool:
            halves = list(pool.map(model.embed, [texts[:8], texts[8:]]))
        assert np.allclose(np.vstack([h.vectors for h in halves]), alone, atol=1e-5)


def test_plan_groups_similar_lengths_within_bounds(fp32):
    rng = np.random.default_rng(1)
    counts = rng.integers(2, 257, size=200).astype(np.int32)
    batches = fp32.plan(counts)
    assert sorted(np.concatenate(batches).tolist()) == list(range(200))
    for rows in batches:
        assert len(rows) <= fp32.sub_batch_size
        assert len(rows) * counts[rows].max() <= fp32.settings.max_batch_tokens
    padded = sum(len(rows) * counts[rows].max() for rows in batches)
    unsorted = sum(len(rows) * counts[rows].max() for rows in fp32.plan(counts, sort=False))
    assert padded < 0.8 * unsorted


# --- validation -------------------------------------------------------------------


def test_check_texts_accepts_empty_strings_and_bytes():
    assert check_texts(["", "a", "é".encode()]) == ["", "a", "é"]


@pytest.mark.parametrize(
    ("texts", "field", "rule"),
    [
        ([], "texts", "must hold 1 to 256"),
        (["x"] * (MAX_TEXTS + 1), "texts", "must hold 1 to 256"),
        (["ok", "a" * (MAX_TEXT_BYTES + 1)], "texts[1]", f"at most {MAX_TEXT_BYTES} bytes"),
        (["ok", "ok", "é" * (MAX_TEXT_BYTES // 2 + 1)], "texts[2]", "bytes"),  # 2 bytes per character
        (["ok", b"bad \xff byte"], "texts[1]", "not valid UTF-8"),
        (["ok", "ok", "ok", "lone \ud800 surrogate"], "texts[3]", "not valid UTF-8"),
    ],
)
def test_check_texts_names_the_offending_index(texts, field, rule):
    with pytest.raises(InvalidInput) as caught:
        check_texts(texts)
    assert caught.value.field == field
    assert rule in caught.value.rule


def test_a_text_of_exactly_the_byte_limit_is_accepted():
    assert len(check_texts(["a" * MAX_TEXT_BYTES])[0]) == MAX_TEXT_BYTES


# --- the spec ----------------------------------------------------------------------


def _with_spec(manifest: Manifest, **changes) -> Manifest:
    spec = {**manifest.spec, **changes}
    return dataclasses.replace(manifest, spec={k: v for k, v in spec.items() if v is not None})


def test_spec_is_strict(manifest):
    assert parse_spec(manifest).dimension == 384
    with pytest.raises(ManifestError, match="spec.extra: unknown key"):
        parse_spec(_with_spec(manifest, extra=1))
    with pytest.raises(ManifestError, match="spec.max_tokens: missing key"):
        parse_spec(_with_spec(manifest, max_tokens=None))
    with pytest.raises(ManifestError, match="spec.pooling"):
        parse_spec(_with_spec(manifest, pooling="cls"))
    precisions = {**manifest.spec["precisions"], "int4": manifest.spec["precisions"]["fp32"]}
    with pytest.raises(ManifestError, match="spec.precisions.int4"):
        parse_spec(_with_spec(manifest, precisions=precisions))


def test_a_precision_that_missed_its_bar_is_never_served(artifact, manifest):
    default = manifest.spec["default_precision"]
    failing = {**manifest.spec["precisions"], default: {**manifest.spec["precisions"][default], "meets_bar": False}}
    broken = _with_spec(manifest, precisions=failing)
    with pytest.raises(ManifestError, match="did not meet its fidelity bar"):
        parse_spec(broken)
    with pytest.raises(ManifestError, match="did not meet its fidelity bar"):
        load_embedder(artifact, broken)


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


# --- the deal-to-text template -------------------------------------------------------


def test_deal_text_renders_fields_in_order_and_skips_missing_ones():
    deal = DealRecord(
        deal_id="d-1",
        name="  Acme\nrenewal ",
        company="Acme Corp",
        industry="software",
        region="emea",
        stage="proposal",
        value=48_000,
        currency="EUR",
        competitor_present=True,
        notes="Procurement wants\t3-year terms",
        outcome=Outcome.WON,
    )
    assert deal_to_text(deal) == (
        "Deal: Acme renewal. Company: Acme Corp. Industry: software. Region: emea. Stage: proposal. "
        "Value: 10k-50k EUR. Competitor: present. Notes: Procurement wants 3-year terms"
    )
    assert deal_to_text(DealRecord(deal_id="d-2", company="Globex", competitor_present=False)) == (
        "Company: Globex. Competitor: none."
    )
    assert deal_to_text(DealRecord(deal_id="d-3")) == ""
    assert TEMPLATE_VERSION == "deal-text-v1"


def test_deal_text_ignores_ids_outcome_and_exact_amounts():
    base = DealRecord(deal_id="a", workspace_id="w1", company="Initech", value=52_000, currency="USD")
    other = dataclasses.replace(base, deal_id="b", workspace_id="w2", value=58_000, outcome=Outcome.LOST)
    assert deal_to_text(base) == deal_to_text(other)
    assert deal_to_text(dataclasses.replace(base, value=120_000)) != deal_to_text(base)


def test_value_bands_cover_every_positive_amount_in_order():
    assert value_band(0) is None and value_band(float("nan")) is None and value_band(-5) is None
    one_per_band = (1, 10_000, 60_000, 150_000, 300_000, 600_000, 2e6, 1e9)
    assert [value_band(v) for v in one_per_band] == [label for _, label in VALUE_BANDS]
    assert value_band(9_999.99) == value_band(1) and value_band(49_999) == value_band(10_000)
