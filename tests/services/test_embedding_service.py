"""EmbeddingService over a real channel: cached export -> publish -> registry ->
gRPC, compared with sentence-transformers' own vectors. (Named *_service so it
does not clash with tests/engines/test_embedding.py: test folders are not packages.)"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.engines.embedding import BatcherConfig, DynamicBatcher
from server.interceptors import ErrorAndLogInterceptor
from server.models.publish import publish
from server.models.registry import ModelRegistry
from server.services.embedding import EmbeddingServicer, EmbedRequestWire, add_to_server
from training.embedder import cached_export, cached_reference, cosine_per_row, deal_like_texts
from vectoros.core.deal_codec.proto import deal_to_proto
from vectoros.core.deal_text import TEMPLATE_VERSION, deal_to_text
from vectoros.core.deals import DealRecord
from vectoros.core.embedder import EmbedderSettings, load_embedder
from vectoros.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)

LONG = deal_like_texts(1, seed=41, min_words=450, max_words=450)[0]
TEXTS = ["", "Expansion at Hooli, security review pending", "Zürich: Verlängerung um 3 Jahre", LONG,
         *deal_like_texts(8, seed=42)]


@pytest.fixture(scope="module")
def artifact() -> Path:
    return cached_export()


@pytest.fixture(scope="module")
def models(artifact, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("embedding-service") / "models"
    assert publish(artifact, root).version == 1
    return root


def _registry(models: Path, **settings) -> ModelRegistry:
    loader = functools.partial(load_embedder, settings=EmbedderSettings(**settings)) if settings else load_embedder
    registry = ModelRegistry(models, {"embedder": loader}, names=["embedder"])
    registry.refresh(notify=False)
    return registry


@pytest.fixture(scope="module")
def registry(models) -> ModelRegistry:
    return _registry(models)


@pytest.fixture(scope="module")
def fp32_registry(models) -> ModelRegistry:
    return _registry(models, precision="fp32")


@contextlib.asynccontextmanager
async def serving(registry, config: BatcherConfig | None = None):
    """A gRPC server on a free port with the interceptor the real server uses."""
    servicer = EmbeddingServicer(registry, DynamicBatcher(config or BatcherConfig()))
    server = grpc.aio.server(interceptors=[ErrorAndLogInterceptor()])
    add_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield embedding_pb2_grpc.EmbeddingServiceStub(channel), channel, servicer
    finally:
        await server.stop(None)
        await servicer.close()


def _vectors(response) -> np.ndarray:
    return np.array([list(e.values) for e in response.embeddings], dtype=np.float32)


def _violation(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    bad_request = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad_request)
    return bad_request.field_violations[0].field


# --- Embed ----------------------------------------------------------------------


async def test_embed_round_trip_matches_sentence_transformers(fp32_registry):
    reference = cached_reference(TEXTS)
    async with serving(fp32_registry) as (stub, _, _):
        response = await stub.Embed(embedding_pb2.EmbedRequest(texts=TEXTS))
    vectors = _vectors(response)
    assert response.dimension == 384 and vectors.shape == (len(TEXTS), 384)
    assert (response.model.name, response.model.version) == ("embedder", 1)
    assert np.allclose(vectors, reference, atol=1e-4)
    assert [e.truncated for e in response.embeddings] == [False, False, False, True] + [False] * 8
    assert response.embeddings[3].token_count == 256 and response.embeddings[0].token_count == 2


async def test_served_default_precision_stays_close_to_sentence_transformers(registry):
    reference = cached_reference(TEXTS)
    async with serving(registry) as (stub, _, _):
        response = await stub.Embed(embedding_pb2.EmbedRequest(texts=TEXTS))
        info = await stub.GetModelInfo(embedding_pb2.EmbeddingServiceGetModelInfoRequest())
    cosine = cosine_per_row(_vectors(response), reference)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.97
    assert np.allclose(np.linalg.norm(_vectors(response), axis=1), 1.0, atol=1e-5)
    assert info.precision == registry.select("embedder").manifest.spec["default_precision"]


async def test_concurrent_single_text_callers_are_batched_and_get_their_own_vectors(registry):
    texts = deal_like_texts(32, seed=43)
    expected = registry.select("embedder").model.embed(texts).vectors
    config = BatcherConfig(max_batch_size=32, max_wait_ms=5, cache_entries=0)
    async with serving(registry, config) as (stub, _, servicer):
        responses = await asyncio.gather(*(stub.Embed(embedding_pb2.EmbedRequest(texts=[t])) for t in texts))
        stats = servicer._batcher.stats
    assert np.allclose(np.vstack([_vectors(r) for r in responses]), expected, atol=1e-5)
    assert stats.batched_texts == 32
    assert stats.batches < 32  # callers shared model calls


async def test_full_queue_answers_resource_exhausted(registry):
    config = BatcherConfig(max_batch_size=1, max_wait_ms=0, max_queue=2, cache_entries=0)
    texts = deal_like_texts(40, seed=44, min_words=200, max_words=250)
    async with serving(registry, config) as (stub, _, _):
        outcomes = await asyncio.gather(
            *(stub.Embed(embedding_pb2.EmbedRequest(texts=[t])) for t in texts), return_exceptions=True
        )
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert refused, "40 concurrent long texts against a queue of 2 must overflow it"
    assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert "queue is full" in refused[0].details()
    served = [o for o in outcomes if isinstance(o, embedding_pb2.EmbedResponse)]
    assert len(served) + len(refused) == 40 and served


@pytest.mark.parametrize(
    ("texts", "field", "rule"),
    [
        ([], "texts", "must hold 1 to 256 texts, got 0"),
        (["x"] * 257, "texts", "must hold 1 to 256 texts, got 257"),
        (["ok", "a" * (32 * 1024 + 1)], "texts[1]", "at most 32768 bytes"),
    ],
)
async def test_bad_texts_are_invalid_argument_naming_the_field(registry, texts, field, rule):
    async with serving(registry) as (stub, _, _):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Embed(embedding_pb2.EmbedRequest(texts=texts))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: ") and rule in caught.value.details()
    assert _violation(caught.value) == field


async def test_invalid_utf8_is_invalid_argument_naming_the_index(registry):
    # protobuf clients refuse to send it, so the frame is built by hand.
    raw = EmbedRequestWire(texts=[b"fine", "caf\u00e9".encode(), b"broken \xc3\x28 text"]).SerializeToString()
    async with serving(registry) as (_, channel, _):
        embed = channel.unary_unary(
            "/vectoros.v1.EmbeddingService/Embed",
            request_serializer=lambda data: data,
            response_deserializer=embedding_pb2.EmbedResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await embed(raw)
        ok = await embed(EmbedRequestWire(texts=[b"fine", "caf\u00e9".encode()]).SerializeToString())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("texts[2]: not valid UTF-8")
    assert len(ok.embeddings) == 2


# --- EmbedDeals -----------------------------------------------------------------------


def _deals(count: int) -> list[DealRecord]:
    texts = deal_like_texts(count, seed=45)
    return [
        DealRecord(
            deal_id=f"deal-{i}", workspace_id="w", name=f"Deal {i}", company=["Acme Corp", "Globex"][i % 2],
            industry="software", region="emea", stage="proposal", value=1000.0 * (i + 1) ** 3, currency="USD",
            competitor_present=bool(i % 3) if i % 4 else None, notes=text,
        )
        for i, text in enumerate(texts)
    ]


async def test_embed_deals_uses_the_versioned_template(registry):
    deals = _deals(6)
    async with serving(registry) as (stub, _, _):
        response = await stub.EmbedDeals(embedding_pb2.EmbedDealsRequest(deals=[deal_to_proto(d) for d in deals]))
        as_text = await stub.Embed(embedding_pb2.EmbedRequest(texts=[deal_to_text(d) for d in deals]))
    assert response.template_version == TEMPLATE_VERSION == "deal-text-v1"
    assert (response.model.version, response.dimension) == (1, 384)
    assert np.allclose(_vectors(response), _vectors(as_text), atol=1e-5)


async def test_embed_deals_rejects_bad_deals_naming_the_field(registry):
    good = deal_to_proto(_deals(1)[0])
    bad = common_pb2.Deal(id="d-2", value=-5)
    async with serving(registry) as (stub, channel, _):
        with pytest.raises(grpc.aio.AioRpcError) as negative:
            await stub.EmbedDeals(embedding_pb2.EmbedDealsRequest(deals=[good, bad]))
        with pytest.raises(grpc.aio.AioRpcError) as empty:
            await stub.EmbedDeals(embedding_pb2.EmbedDealsRequest(deals=[]))
        embed_deals = channel.unary_unary(
            "/vectoros.v1.EmbeddingService/EmbedDeals",
            request_serializer=lambda data: data,
            response_deserializer=embedding_pb2.EmbedDealsResponse.FromString,
        )
        deal = b"\x0a\x01d" + b"\x1a\x02\xff\xfe"  # id "d", name: two bytes that are not UTF-8
        with pytest.raises(grpc.aio.AioRpcError) as unparsable:
            # A good deal first, then the bad one: the error names deals[1].
            first = embedding_pb2.EmbedDealsRequest(deals=[good]).SerializeToString()
            await embed_deals(first + b"\x0a" + bytes([len(deal)]) + deal)
    assert negative.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violation(negative.value) == "deals[1].value"
    assert empty.value.details() == "deals: must hold 1 to 256 deals, got 0"
    assert unparsable.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violation(unparsable.value) == "deals[1]"
    assert unparsable.value.details().startswith("deals[1]: could not be parsed")
    assert "valid UTF-8" in unparsable.value.details()


# --- GetModelInfo and versions ----------------------------------------------------------


async def test_get_model_info_describes_the_served_version(registry):
    loaded = registry.select("embedder")
    async with serving(registry) as (stub, _, _):
        info = await stub.GetModelInfo(embedding_pb2.EmbeddingServiceGetModelInfoRequest())
    assert (info.info.model.name, info.info.model.version, info.info.kind) == ("embedder", 1, "embedder")
    assert (info.dimension, info.max_tokens, info.template_version) == (384, 256, TEMPLATE_VERSION)
    assert info.precision in ("fp32", "int8")
    assert list(info.info.labels) == ["production"]
    assert info.info.metrics["cosine_mean"] == pytest.approx(loaded.manifest.metrics["cosine_mean"])
    assert info.info.training_data_sha256 == loaded.manifest.training_data["sha256"]


async def test_a_version_swap_keeps_requests_in_flight_on_their_version(artifact, tmp_path):
    root = tmp_path / "models"
    publish(artifact, root)
    # fp32: it runs texts together, so the batcher waits for company (int8 does not).
    registry = _registry(root, precision="fp32")
    # A long wait and a large batch hold the first requests in the queue while the
    # swap happens; the 64-text request after the swap fills the batch and starts it.
    config = BatcherConfig(max_batch_size=64, max_wait_ms=120_000, cache_entries=0, workers=1)
    texts = deal_like_texts(74, seed=46)
    async with serving(registry, config) as (stub, _, servicer):
        before = [asyncio.ensure_future(stub.Embed(embedding_pb2.EmbedRequest(texts=[t]))) for t in texts[:10]]
        async with asyncio.timeout(30):
            while servicer._batcher.queued < 10:
                await asyncio.sleep(0.01)
        assert publish(artifact, root).version == 2
        await asyncio.to_thread(registry.refresh, notify=False)
        assert registry.select("embedder").version == 2
        after = await stub.Embed(embedding_pb2.EmbedRequest(texts=texts[10:]))
        old = await asyncio.gather(*before)
    assert [r.model.version for r in old] == [1] * 10
    assert after.model.version == 2
    expected = registry.get("embedder", 1).model.embed(texts[:10]).vectors
    assert np.allclose(np.vstack([_vectors(r) for r in old]), expected, atol=1e-5)
