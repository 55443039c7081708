"""`AsyncClient`: the asyncio client (grpc.aio), the same methods, options and
results as `Client`, each a coroutine; the export is an async iterator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vectoros_client.base import DEFAULT_RETRY, ClientOptions, new_request_id
from vectoros_client.calls import Streamed, Unary
from vectoros_client.channel import TLS, RetryPolicy
from vectoros_client.errors import DeadlineExceeded, Unavailable, from_rpc_error
from vectoros_client.services import embedding, forecast, insight, scoring, similarity
from vectoros_client.values import DealLike, Outcome

T = TypeVar("T")
M = TypeVar("M", bound=Message)


class AsyncClient:
    """An asyncio client of one VectorOS server; see `Client` for the options.

        async with AsyncClient("127.0.0.1:50051", token=token) as client:
            score = await client.score_deal(Deal(id="d1", value=50_000, probability=0.4))
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TLS | bool | None = None,
        timeout: float = 30.0,
        stream_timeout: float = 300.0,
        wait_for_ready: bool = True,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        keepalive_seconds: float | None = 30.0,
        max_message_mb: int = 16,
        allow_plaintext_token: bool = False,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.options = ClientOptions(
            target, token=token, tls=tls, timeout=timeout, stream_timeout=stream_timeout,
            wait_for_ready=wait_for_ready, retry=retry, keepalive_seconds=keepalive_seconds,
            max_message_mb=max_message_mb, allow_plaintext_token=allow_plaintext_token,
            channel_options=channel_options,
        )
        self.channel: grpc.aio.Channel = self.options.settings.aio_channel()
        self._methods: dict[tuple, Any] = {}

    # --- plumbing ---

    def _method(self, path: str, request: Message, response_type: type[Message], streaming: bool) -> Any:
        key = (path, type(request), response_type, streaming)
        method = self._methods.get(key)
        if method is None:
            factory = self.channel.unary_stream if streaming else self.channel.unary_unary
            method = factory(path, request_serializer=type(request).SerializeToString,
                             response_deserializer=response_type.FromString)
            self._methods[key] = method
        return method

    async def _unary(self, path: str, request: Message, response_type: type[M], timeout: float | None) -> M:
        request_id = new_request_id()
        method = self._method(path, request, response_type, streaming=False)
        try:
            return await method(request, **self.options.call_kwargs(timeout, self.options.timeout, request_id))
        except grpc.RpcError as error:
            raise from_rpc_error(error, method=path, request_id=request_id) from None

    async def _run(self, call: Unary[T], timeout: float | None) -> T:
        return call.parse(await self._unary(call.rpc.path, call.request, call.rpc.response, timeout))

    async def _stream(self, call: Streamed[T], timeout: float | None) -> AsyncIterator[T]:
        request_id = new_request_id()
        path = call.rpc.path
        method = self._method(path, call.request, call.rpc.response, streaming=True)
        responses = method(call.request, **self.options.call_kwargs(timeout, self.options.stream_timeout, request_id))
        try:
            async for response in responses:
                for item in call.parse(response):
                    yield item
        except grpc.RpcError as error:
            raise from_rpc_error(error, method=path, request_id=request_id) from None
        finally:
            responses.cancel()

    async def call(self, method: str, request: Message, response_type: type[M], *, timeout: float | None = None) -> M:
        """See `Client.call`."""
        return await self._unary(method, request, response_type, timeout)

    async def serving(self, service: str = "", *, timeout: float | None = None) -> bool:
        """See `Client.serving`."""
        check = health_pb2_grpc.HealthStub(self.channel).Check
        request_id = new_request_id()
        try:
            response = await check(health_pb2.HealthCheckRequest(service=service),
                                   **self.options.call_kwargs(timeout, self.options.timeout, request_id))
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise from_rpc_error(error, method="/grpc.health.v1.Health/Check", request_id=request_id) from None
        return response.status == health_pb2.HealthCheckResponse.SERVING

    async def wait_until_serving(self, *services: str, timeout: float = 60.0) -> None:
        """See `Client.wait_until_serving`."""
        deadline = time.monotonic() + timeout
        for service in services or ("",):
            while True:
                try:
                    if await self.serving(service, timeout=max(0.1, deadline - time.monotonic())):
                        break
                except (Unavailable, DeadlineExceeded):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service or 'the server'} not SERVING after {timeout:g} s")
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- EmbeddingService ---

    async def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> embedding.Embeddings:
        return await self._run(embedding.embed(texts), timeout)

    async def embed_deals(self, deals: Sequence[DealLike], *, timeout: float | None = None) -> embedding.Embeddings:
        return await self._run(embedding.embed_deals(deals), timeout)

    async def embedder_info(self, *, timeout: float | None = None) -> embedding.EmbedderInfo:
        return await self._run(embedding.embedder_info(), timeout)

    # --- SimilarityService ---

    async def upsert_deals(
        self, workspace_id: str, deals: Sequence[DealLike], *, timeout: float | None = None
    ) -> similarity.UpsertResult:
        return await self._run(similarity.upsert_deals(workspace_id, deals), timeout)

    async def delete_deals(self, workspace_id: str, deal_ids: Sequence[str], *, timeout: float | None = None) -> int:
        return await self._run(similarity.delete_deals(workspace_id, deal_ids), timeout)

    async def find_similar_deals(
        self,
        workspace_id: str,
        *,
        deal: DealLike | None = None,
        deal_id: str | None = None,
        text: str | None = None,
        top_k: int = 0,
        min_score: float | None = None,
        filter: similarity.SimilarityFilter | None = None,  # noqa: A002
        timeout: float | None = None,
    ) -> similarity.SimilarDeals:
        call = similarity.find_similar_deals(
            workspace_id, deal=deal, deal_id=deal_id, text=text, top_k=top_k, min_score=min_score, filter=filter
        )
        return await self._run(call, timeout)

    async def get_stats(self, workspace_id: str, *, timeout: float | None = None) -> similarity.WorkspaceStats:
        return await self._run(similarity.get_stats(workspace_id), timeout)

    # --- ScoringService ---

    async def score_deal(
        self, deal: DealLike, *, model_version: int = 0, top_factors: int = 0, timeout: float | None = None
    ) -> scoring.DealScore:
        return await self._run(scoring.score_deal(deal, model_version=model_version, top_factors=top_factors), timeout)

    async def score_deals(
        self, deals: Sequence[DealLike], *, model_version: int = 0, top_factors: int = 0,
        timeout: float | None = None,
    ) -> list[scoring.DealScore]:
        call = scoring.score_deals(deals, model_version=model_version, top_factors=top_factors)
        return await self._run(call, timeout)

    async def scorer_info(self, model_version: int = 0, *, timeout: float | None = None) -> scoring.ScorerInfo:
        return await self._run(scoring.scorer_info(model_version), timeout)

    # --- ForecastService ---

    async def forecast(
        self, deals: Sequence[DealLike], *, start: datetime, end: datetime,
        options: forecast.SimulationOptions | None = None, timeout: float | None = None,
    ) -> forecast.Forecast:
        return await self._run(forecast.forecast(deals, start=start, end=end, options=options), timeout)

    async def compare_scenarios(
        self, base_deals: Sequence[DealLike], scenarios: Sequence[forecast.Scenario], *, start: datetime,
        end: datetime, options: forecast.SimulationOptions | None = None, timeout: float | None = None,
    ) -> forecast.ScenarioComparison:
        call = forecast.compare_scenarios(base_deals, scenarios, start=start, end=end, options=options)
        return await self._run(call, timeout)

    # --- InsightService ---

    async def generate_insights(
        self, deal: DealLike, *, bypass_cache: bool = False, timeout: float | None = None
    ) -> insight.Insights:
        return await self._run(insight.generate_insights(deal, bypass_cache=bypass_cache), timeout)

    async def record_feedback(
        self, workspace_id: str, insight_set_id: str, rating: insight.FeedbackRating | str, *,
        insight_id: str = "", acted_on: bool = False, comment: str = "", idempotency_key: str = "",
        timeout: float | None = None,
    ) -> insight.FeedbackRecorded:
        call = insight.record_feedback(workspace_id, insight_set_id, rating, insight_id=insight_id,
                                       acted_on=acted_on, comment=comment, idempotency_key=idempotency_key)
        return await self._run(call, timeout)

    async def record_outcome(
        self, workspace_id: str, deal_id: str, outcome: Outcome | str, *, closed_time: datetime | None = None,
        final_value: float = 0.0, timeout: float | None = None,
    ) -> bool:
        call = insight.record_outcome(workspace_id, deal_id, outcome, closed_time=closed_time,
                                      final_value=final_value)
        return await self._run(call, timeout)

    async def scan_pipeline(
        self, workspace_id: str, deals: Sequence[DealLike] = (), *, timeout: float | None = None
    ) -> insight.PipelineScan:
        return await self._run(insight.scan_pipeline(workspace_id, deals), timeout)

    def export_training_data(
        self, workspace_id: str, export_format: insight.ExportFormat | str, *, since: datetime | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[str]:
        """``async for line in client.export_training_data(...)``; see `Client.export_training_data`."""
        return self._stream(insight.export_training_data(workspace_id, export_format, since=since), timeout)
