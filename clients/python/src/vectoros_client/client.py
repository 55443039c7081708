"""`Client`: the blocking client, one typed method per RPC of the API."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
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


class Client:
    """A blocking client of one VectorOS server, over one channel.

        with Client("127.0.0.1:50051", token=token) as client:
            score = client.score_deal(Deal(id="d1", value=50_000, probability=0.4))

    Options (keyword only):

    - `token`: a bearer token (``vos_...``), sent on every call. Without `tls`
      only to a loopback address, unless `allow_plaintext_token` (a proxy on
      the way adds TLS).
    - `tls`: `TLS(root_certificates=..., certificate_chain=..., private_key=...)`
      for TLS and mutual TLS, or True for TLS with the system's roots.
    - `timeout`: the deadline of every unary call in seconds (30), unless the
      call passes its own `timeout=`; `stream_timeout` (300) for the export.
    - `wait_for_ready` (True): a call waits, within its deadline, for the
      server to become reachable instead of failing at once.
    - `retry`: the `RetryPolicy` of idempotent calls, applied by gRPC from the
      channel's service config; None turns retries off.
    - `keepalive_seconds` (30): ping the server while calls are open, so a dead
      connection fails the call instead of hanging it; None turns it off.
    - `max_message_mb` (16, the server's default): largest message either way.
    - `channel_options`: extra gRPC channel arguments, appended last.

    Errors are `vectoros_client.errors.ApiError` subclasses. Results are
    frozen dataclasses; each large one keeps the response message as `.proto`.
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
        self.channel: grpc.Channel = self.options.settings.channel()
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

    def _unary(self, path: str, request: Message, response_type: type[M], timeout: float | None) -> M:
        request_id = new_request_id()
        method = self._method(path, request, response_type, streaming=False)
        try:
            return method(request, **self.options.call_kwargs(timeout, self.options.timeout, request_id))
        except grpc.RpcError as error:
            raise from_rpc_error(error, method=path, request_id=request_id) from None

    def _run(self, call: Unary[T], timeout: float | None) -> T:
        return call.parse(self._unary(call.rpc.path, call.request, call.rpc.response, timeout))

    def _stream(self, call: Streamed[T], timeout: float | None) -> Iterator[T]:
        request_id = new_request_id()
        path = call.rpc.path
        method = self._method(path, call.request, call.rpc.response, streaming=True)
        responses = method(call.request, **self.options.call_kwargs(timeout, self.options.stream_timeout, request_id))

        def items() -> Iterator[T]:
            try:
                for response in responses:
                    yield from call.parse(response)
            except grpc.RpcError as error:
                raise from_rpc_error(error, method=path, request_id=request_id) from None
            finally:
                responses.cancel()  # a no-op once finished; stops the server when the caller stops early

        return items()

    def call(self, method: str, request: Message, response_type: type[M], *, timeout: float | None = None) -> M:
        """Call any unary RPC by its path (``/vectoros.v1.ScoringService/ScoreDeal``)
        with this client's deadline, token and error mapping; returns the response
        message. For API fields this client does not wrap yet."""
        return self._unary(method, request, response_type, timeout)

    def serving(self, service: str = "", *, timeout: float | None = None) -> bool:
        """Whether `service` (``vectoros.v1.ScoringService``; "" for the server) is SERVING."""
        check = health_pb2_grpc.HealthStub(self.channel).Check
        request_id = new_request_id()
        try:
            status = check(health_pb2.HealthCheckRequest(service=service),
                           **self.options.call_kwargs(timeout, self.options.timeout, request_id)).status
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise from_rpc_error(error, method="/grpc.health.v1.Health/Check", request_id=request_id) from None
        return status == health_pb2.HealthCheckResponse.SERVING

    def wait_until_serving(self, *services: str, timeout: float = 60.0) -> None:
        """Block until every service (fully qualified) is SERVING; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        for service in services or ("",):
            while True:
                try:
                    if self.serving(service, timeout=max(0.1, deadline - time.monotonic())):
                        break
                except (Unavailable, DeadlineExceeded):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service or 'the server'} not SERVING after {timeout:g} s")
                time.sleep(0.1)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- EmbeddingService ---

    def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> embedding.Embeddings:
        """Unit-length float32 vectors for 1 to 256 texts, in order."""
        return self._run(embedding.embed(texts), timeout)

    def embed_deals(self, deals: Sequence[DealLike], *, timeout: float | None = None) -> embedding.Embeddings:
        """Vectors for 1 to 256 deals through the server's deal-to-text template."""
        return self._run(embedding.embed_deals(deals), timeout)

    def embedder_info(self, *, timeout: float | None = None) -> embedding.EmbedderInfo:
        """The embedder that serves requests (EmbeddingService.GetModelInfo)."""
        return self._run(embedding.embedder_info(), timeout)

    # --- SimilarityService ---

    def upsert_deals(
        self, workspace_id: str, deals: Sequence[DealLike], *, timeout: float | None = None
    ) -> similarity.UpsertResult:
        """Embed and store 1 to 256 deals of a workspace, replacing those with the same id."""
        return self._run(similarity.upsert_deals(workspace_id, deals), timeout)

    def delete_deals(self, workspace_id: str, deal_ids: Sequence[str], *, timeout: float | None = None) -> int:
        """Remove stored deals; returns how many were stored (unknown ids are ignored)."""
        return self._run(similarity.delete_deals(workspace_id, deal_ids), timeout)

    def find_similar_deals(
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
        """The stored deals most like a deal, a stored deal's id, or a text (give exactly one);
        `top_k` 0 returns the server's default of 10."""
        call = similarity.find_similar_deals(
            workspace_id, deal=deal, deal_id=deal_id, text=text, top_k=top_k, min_score=min_score, filter=filter
        )
        return self._run(call, timeout)

    def get_stats(self, workspace_id: str, *, timeout: float | None = None) -> similarity.WorkspaceStats:
        """How many deals a workspace has stored, by outcome."""
        return self._run(similarity.get_stats(workspace_id), timeout)

    # --- ScoringService ---

    def score_deal(
        self, deal: DealLike, *, model_version: int = 0, top_factors: int = 0, timeout: float | None = None
    ) -> scoring.DealScore:
        """A deal's win probability, risk level and top factors (`model_version` 0: production)."""
        return self._run(scoring.score_deal(deal, model_version=model_version, top_factors=top_factors), timeout)

    def score_deals(
        self, deals: Sequence[DealLike], *, model_version: int = 0, top_factors: int = 0,
        timeout: float | None = None,
    ) -> list[scoring.DealScore]:
        """Scores of 1 to 1,000 deals, in order."""
        return self._run(scoring.score_deals(deals, model_version=model_version, top_factors=top_factors), timeout)

    def scorer_info(self, model_version: int = 0, *, timeout: float | None = None) -> scoring.ScorerInfo:
        """The scorer that serves requests (ScoringService.GetModelInfo)."""
        return self._run(scoring.scorer_info(model_version), timeout)

    # --- ForecastService ---

    def forecast(
        self, deals: Sequence[DealLike], *, start: datetime, end: datetime,
        options: forecast.SimulationOptions | None = None, timeout: float | None = None,
    ) -> forecast.Forecast:
        """Simulated revenue the open `deals` book in [start, end)."""
        return self._run(forecast.forecast(deals, start=start, end=end, options=options), timeout)

    def compare_scenarios(
        self, base_deals: Sequence[DealLike], scenarios: Sequence[forecast.Scenario], *, start: datetime,
        end: datetime, options: forecast.SimulationOptions | None = None, timeout: float | None = None,
    ) -> forecast.ScenarioComparison:
        """The base pipeline and what-if variants on the same random numbers."""
        call = forecast.compare_scenarios(base_deals, scenarios, start=start, end=end, options=options)
        return self._run(call, timeout)

    # --- InsightService ---

    def generate_insights(
        self, deal: DealLike, *, bypass_cache: bool = False, timeout: float | None = None
    ) -> insight.Insights:
        """Insights on a deal (with id and workspace_id), stored for feedback. Never retried:
        each call stores a new insight set."""
        return self._run(insight.generate_insights(deal, bypass_cache=bypass_cache), timeout)

    def record_feedback(
        self, workspace_id: str, insight_set_id: str, rating: insight.FeedbackRating | str, *,
        insight_id: str = "", acted_on: bool = False, comment: str = "", idempotency_key: str = "",
        timeout: float | None = None,
    ) -> insight.FeedbackRecorded:
        """A rep's rating of an insight set (or of one insight of it). The same
        `idempotency_key`, or the same feedback without one, is recorded once."""
        call = insight.record_feedback(workspace_id, insight_set_id, rating, insight_id=insight_id,
                                       acted_on=acted_on, comment=comment, idempotency_key=idempotency_key)
        return self._run(call, timeout)

    def record_outcome(
        self, workspace_id: str, deal_id: str, outcome: Outcome | str, *, closed_time: datetime | None = None,
        final_value: float = 0.0, timeout: float | None = None,
    ) -> bool:
        """Record that a deal was won or lost; returns True when it already was."""
        call = insight.record_outcome(workspace_id, deal_id, outcome, closed_time=closed_time,
                                      final_value=final_value)
        return self._run(call, timeout)

    def scan_pipeline(
        self, workspace_id: str, deals: Sequence[DealLike] = (), *, timeout: float | None = None
    ) -> insight.PipelineScan:
        """Alerts on open deals (`deals`, or the workspace's stored open deals when empty)."""
        return self._run(insight.scan_pipeline(workspace_id, deals), timeout)

    def export_training_data(
        self, workspace_id: str, export_format: insight.ExportFormat | str, *, since: datetime | None = None,
        timeout: float | None = None,
    ) -> Iterator[str]:
        """The workspace's ledger as JSON Lines, streamed (deadline: `stream_timeout`).
        Stopping early cancels the call."""
        return self._stream(insight.export_training_data(workspace_id, export_format, since=since), timeout)
