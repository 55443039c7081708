"""The embedder artifact (`vectoros.core.embedder`): the exported model against
sentence-transformers, text validation and the strict spec. Uses the cached
export (training.embedder.cached_export)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from training.embedder import cached_export, cached_reference, cosine_per_row, deal_like_texts
from vectoros.core.embedder import (
    MAX_TEXT_BYTES,
    MAX_TEXTS,
    EmbedderSettings,
    check_texts,
    load_embedder,
    parse_spec,
)
from vectoros.core.errors import InvalidInput
from vectoros.core.manifest import Manifest, ManifestError

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)

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
