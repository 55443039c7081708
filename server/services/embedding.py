"""EmbeddingService: protobuf in, batcher call, protobuf out.

Register it with `add_to_server(servicer, server)`, not the generated
`add_EmbeddingServiceServicer_to_server`: `Embed` is parsed with its texts as
bytes, so that a text that is not valid UTF-8 is answered INVALID_ARGUMENT
naming its index (`texts[3]: not valid UTF-8 ...`), and `EmbedDeals` parses
each deal on its own (`deals[3]: could not be parsed ...`). protobuf itself
rejects the whole message without saying which element, and gRPC reports
that as an internal error.

Version choice: each request takes one `LoadedModel` from the registry when it
starts and every text of it goes to that model, so a version swap never mixes
versions inside a response nor loses a request in flight. The canary share is
by request (the SHA-256 of its texts), so a retried request gets the same version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from server.access import check_named_workspaces
from server.engines.embedding import DynamicBatcher
from vectoros.core.deal_codec.proto import deal_from_proto, time_to_proto
from vectoros.core.deal_text import TEMPLATE_VERSION, deal_to_text
from vectoros.core.embedder import MAX_TEXTS, EmbedBatchResult, check_texts
from vectoros.core.errors import InvalidInput, unparsable
from vectoros.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

MODEL = "embedder"
SERVICE = "vectoros.v1.EmbeddingService"


def _wire_message(name: str, like: type, field_name: str) -> type:
    """A message with the repeated field `field_name` of message `like` typed bytes:
    identical on the wire (strings and messages are both length-delimited), and
    parsing it never checks UTF-8 nor looks inside the elements."""
    proto = descriptor_pb2.FileDescriptorProto(name=f"vectoros_internal/{name}.proto", package="vectoros.internal")
    message = proto.message_type.add(name=name)
    message.field.add(
        name=field_name,
        number=like.DESCRIPTOR.fields_by_name[field_name].number,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"vectoros.internal.{name}"))


EmbedRequestWire = _wire_message("EmbedRequestWire", embedding_pb2.EmbedRequest, "texts")
# Each deal is parsed on its own, so that a deal protobuf cannot parse (a string
# field that is not UTF-8) is named by its index.
EmbedDealsRequestWire = _wire_message("EmbedDealsRequestWire", embedding_pb2.EmbedDealsRequest, "deals")


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    """`registry` (a `server.models.registry.ModelRegistry`) picks the embedder
    version; `batcher` shares model calls between concurrent requests (one per
    process: its queue bound is the process's). Call `close()` on shutdown."""

    def __init__(self, registry, batcher: DynamicBatcher) -> None:
        self._registry = registry
        self._batcher = batcher

    async def close(self) -> None:
        await self._batcher.close()

    async def Embed(self, request, context: grpc.aio.ServicerContext):
        texts = check_texts(request.texts)
        loaded = self._registry.select(MODEL, _routing_key(texts))
        result = await self._batcher.embed(loaded.model, texts)
        return embedding_pb2.EmbedResponse(
            embeddings=_embeddings(result), dimension=loaded.model.dimension, model=_ref(loaded)
        )

    async def EmbedDeals(self, request, context: grpc.aio.ServicerContext):
        if not 1 <= len(request.deals) <= MAX_TEXTS:
            raise InvalidInput("deals", f"must hold 1 to {MAX_TEXTS} deals, got {len(request.deals)}")
        now = datetime.now(UTC)
        texts = [
            deal_to_text(deal_from_proto(_deal(raw, i), f"deals[{i}]", now)) for i, raw in enumerate(request.deals)
        ]
        loaded = self._registry.select(MODEL, _routing_key(texts))
        result = await self._batcher.embed(loaded.model, texts)
        return embedding_pb2.EmbedDealsResponse(
            embeddings=_embeddings(result),
            dimension=loaded.model.dimension,
            model=_ref(loaded),
            template_version=TEMPLATE_VERSION,
        )

    async def GetModelInfo(self, request, context: grpc.aio.ServicerContext):
        loaded = self._registry.select(MODEL)
        manifest = loaded.manifest
        model = loaded.model
        return embedding_pb2.EmbeddingServiceGetModelInfoResponse(
            info=common_pb2.ModelInfo(
                model=_ref(loaded),
                kind=manifest.kind,
                created_time=time_to_proto(manifest.created_time),
                metrics=manifest.metrics,
                features=[f"text: UTF-8, at most {model.max_tokens} tokens (longer texts are cut)"],
                labels=[loaded.label] if loaded.label else [],
                package_version=manifest.package_version,
                training_data_sha256=manifest.training_data["sha256"],
            ),
            dimension=model.dimension,
            max_tokens=model.max_tokens,
            template_version=TEMPLATE_VERSION,
            precision=model.precision,
        )


def add_to_server(servicer: EmbeddingServicer, server) -> None:
    """Register `servicer` on `server` with the wire messages above (behind
    `server.interceptors.ErrorAndLogInterceptor`, which answers a request that
    still does not parse, e.g. truncated bytes, with INVALID_ARGUMENT)."""
    handlers = {
        "Embed": grpc.unary_unary_rpc_method_handler(
            servicer.Embed,
            request_deserializer=EmbedRequestWire.FromString,
            response_serializer=embedding_pb2.EmbedResponse.SerializeToString,
        ),
        "EmbedDeals": grpc.unary_unary_rpc_method_handler(
            servicer.EmbedDeals,
            request_deserializer=EmbedDealsRequestWire.FromString,
            response_serializer=embedding_pb2.EmbedDealsResponse.SerializeToString,
        ),
        "GetModelInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetModelInfo,
            request_deserializer=embedding_pb2.EmbeddingServiceGetModelInfoRequest.FromString,
            response_serializer=embedding_pb2.EmbeddingServiceGetModelInfoResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


def _deal(raw: bytes, index: int) -> common_pb2.Deal:
    try:
        deal = common_pb2.Deal.FromString(raw)
    except DecodeError as exc:
        raise unparsable(f"deals[{index}]", exc) from None
    # The interceptor sees these deals as bytes: the workspace check is made here.
    check_named_workspaces(deal, f"deals[{index}].")
    return deal


def _routing_key(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _ref(loaded) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=loaded.name, version=loaded.version)


def _embeddings(result: EmbedBatchResult) -> list[embedding_pb2.Embedding]:
    return [
        embedding_pb2.Embedding(values=vector, token_count=count, truncated=truncated)
        for vector, count, truncated in zip(
            result.vectors.tolist(), result.token_counts.tolist(), result.truncated.tolist(), strict=True
        )
    ]
