"""Server assembly and life cycle.

`create_server(config)` builds a ready-to-start server bound to its port, so
tests can bind port 0 and read the port back. `serve(config)` runs it until
SIGTERM or SIGINT, then marks every service NOT_SERVING, drains in-flight calls
for `config.grace_seconds` and returns (exit code 0).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server import logs
from server.auth import TokenAuthority, TokenFileError
from server.config import MIB, ServerConfig, is_loopback
from server.engines.embedding import BatcherConfig, DynamicBatcher
from server.engines.insight import InsightRuntime
from server.engines.scoring import ScoringEngine, load_scorer
from server.engines.similarity.runtime import SimilarityRuntime
from server.interceptors import CallPolicy, RpcInterceptor
from server.metrics import Metrics
from server.models.registry import ModelRegistry
from server.services.embedding import EmbeddingServicer
from server.services.embedding import add_to_server as add_embedding_service
from server.services.forecast import ForecastServicer
from server.services.insight import add_insight_service
from server.services.scoring import ScoringServicer
from server.services.similarity import add_similarity_service
from vectoros.core.embedder import load_embedder
from vectoros.v1 import (
    embedding_pb2,
    forecast_pb2,
    forecast_pb2_grpc,
    insight_pb2,
    scoring_pb2,
    scoring_pb2_grpc,
    similarity_pb2,
)

log = logging.getLogger("vectoros.server")


def _full_name(module, service: str) -> str:
    return module.DESCRIPTOR.services_by_name[service].full_name


FORECAST = _full_name(forecast_pb2, "ForecastService")
SCORING = _full_name(scoring_pb2, "ScoringService")
EMBEDDING = _full_name(embedding_pb2, "EmbeddingService")
SIMILARITY = _full_name(similarity_pb2, "SimilarityService")
INSIGHT = _full_name(insight_pb2, "InsightService")
SERVICES = (EMBEDDING, SIMILARITY, SCORING, FORECAST, INSIGHT)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class VectorOSServer:
    """A gRPC server with its health service, models, stores and background tasks."""

    grpc_server: grpc.aio.Server
    health: health.aio.HealthServicer
    config: ServerConfig
    registry: ModelRegistry
    embedding: EmbeddingServicer
    similarity: SimilarityRuntime
    insight: InsightRuntime
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task] = field(default_factory=list)

    async def start(self) -> None:
        await self.grpc_server.start()
        self.tasks.append(asyncio.create_task(self.registry.run(self.config.model_poll_seconds, self.stopping)))
        self.tasks.append(
            asyncio.create_task(self.similarity.maintain(self.stopping, reindex=self.config.reindex_on_start))
        )

    async def stop(self, grace: float | None = None) -> None:
        """Mark everything NOT_SERVING, stop taking calls, drain, then close the
        batcher and the stores (after the calls that use them have finished)."""
        self.stopping.set()
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(self.config.grace_seconds if grace is None else grace)
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.insight.close()
        await self.embedding.close()
        await asyncio.to_thread(self.similarity.close)

    async def wait_for_termination(self) -> None:
        await self.grpc_server.wait_for_termination()


async def create_server(config: ServerConfig) -> tuple[VectorOSServer, int]:
    """Build the server and bind its port; returns the server and the bound port."""
    metrics = Metrics() if config.metrics_port else None
    server = grpc.aio.server(
        interceptors=[RpcInterceptor(_call_policy(config, metrics))],
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", config.max_receive_mb * MIB),
            ("grpc.max_send_message_length", config.max_send_mb * MIB),
            # Keep idle client connections alive through proxies; refuse pings
            # more often than every 10 s so a misbehaving client cannot spin us.
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ],
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    registry = ModelRegistry(config.models, {"scorer": load_scorer, "embedder": load_embedder})
    # Load what the repository has before taking calls; an empty or missing
    # repository is fine (the model-backed services stay NOT_SERVING).
    await asyncio.to_thread(registry.refresh, notify=False)

    # One batcher per process: its queue bound is the process's, and the
    # similarity service's embeddings share it with Embed calls.
    batcher = DynamicBatcher(
        BatcherConfig(
            max_batch_size=config.embed_max_batch,
            max_wait_ms=config.embed_max_wait_ms,
            max_queue=config.embed_max_queue,
        )
    )
    embedding = EmbeddingServicer(registry, batcher)
    add_embedding_service(embedding, server)
    similarity = await add_similarity_service(server, registry, config, batcher)
    # One scoring path for ScoreDeal(s), GenerateInsights and ScanPipeline.
    scoring = ScoringEngine(registry, similarity.engine)
    insight = await InsightRuntime.open(registry, config, similarity, scoring)
    add_insight_service(server, insight)
    if similarity.opened():
        await asyncio.to_thread(insight.warm)  # workspace histories, before the first call
    forecast_pb2_grpc.add_ForecastServiceServicer_to_server(ForecastServicer(), server)
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(ScoringServicer(scoring), server)

    def serving() -> dict[str, bool]:
        return {
            FORECAST: True,
            SCORING: registry.status("scorer").production is not None,
            EMBEDDING: registry.status("embedder").production is not None,
            SIMILARITY: similarity.ready(),
            INSIGHT: insight.ready(),
        }

    async def update_health() -> None:
        for name, up in serving().items():
            await health_servicer.set(name, SERVING if up else NOT_SERVING)

    async def model_changed(model_name: str) -> None:
        if model_name == "embedder":
            # Opens the store with the first embedder; afterwards keeps the embedder
            # of the served collection loaded when production moved past it.
            was_open = similarity.opened()
            await asyncio.to_thread(similarity.refresh)
            if similarity.opened() and not was_open:
                # Build the workspace histories now, not in the first request.
                await asyncio.to_thread(insight.warm)
        await update_health()

    await health_servicer.set("", SERVING)
    await update_health()
    loop = asyncio.get_running_loop()
    # `run()` calls listeners on the event loop's thread.
    registry.add_listener(lambda model_name: loop.create_task(model_changed(model_name)))
    # The store opening, or a rebuild / reindex switching collections, changes
    # what Similarity and Insight can serve.
    similarity.add_listener(lambda: loop.create_task(update_health()))

    reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = _bind(server, config)
    if port == 0:
        raise SystemExit(f"cannot bind {config.address}")
    if metrics is not None:
        _register_metrics(metrics, registry, batcher)
        insight.engine.on_generated = metrics.observe_generation
        metrics_port = metrics.serve_http(config.metrics_host, config.metrics_port)
        log.info("metrics", extra={"host": config.metrics_host, "port": metrics_port})
    app = VectorOSServer(
        grpc_server=server,
        health=health_servicer,
        config=config,
        registry=registry,
        embedding=embedding,
        similarity=similarity,
        insight=insight,
    )
    return app, port


def _call_policy(config: ServerConfig, metrics: Metrics | None) -> CallPolicy:
    if not config.tokens_file:
        if not is_loopback(config.host):
            log.warning("serving without authentication on a non-loopback address (--allow-unauthenticated): "
                        "any caller can read and change every workspace", extra={"host": config.host})
        return CallPolicy(metrics=metrics)
    try:
        authority = TokenAuthority(Path(config.tokens_file))
    except TokenFileError as exc:
        raise SystemExit(f"--tokens-file: {exc}") from None
    return CallPolicy(authority=authority, max_inflight_per_token=config.max_inflight_per_token, metrics=metrics)


def _register_metrics(metrics: Metrics, registry: ModelRegistry, batcher: DynamicBatcher) -> None:
    """Numbers that live in the registry and the batcher, read at scrape time."""

    def versions():
        for name in ("embedder", "scorer"):
            status = registry.status(name)
            for label, version in (("production", status.production), ("canary", status.canary)):
                if version is not None:
                    yield (name, label), version

    metrics.add_callback("gauge", "vectoros_model_version", "the model version each label serves",
                         ("model", "label"), versions)
    metrics.add_callback("gauge", "vectoros_embedding_queue_depth", "texts waiting for the embedder", (),
                         lambda: [((), batcher.queued)])

    def embedding_counts():
        stats = batcher.stats
        return [(("requested",), stats.texts), (("cache_hit",), stats.cache_hits),
                (("model",), stats.batched_texts), (("rejected",), stats.rejected)]

    metrics.add_callback("counter", "vectoros_embedding_texts", "embedding texts by what happened to them",
                         ("outcome",), embedding_counts)
    metrics.add_callback("counter", "vectoros_embedding_batches", "embedding model calls", (),
                         lambda: [((), batcher.stats.batches)])


def _bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    """Bind the address: TLS when a certificate is configured (mutual TLS with a client CA)."""
    if not config.tls_cert:
        return server.add_insecure_port(config.address)
    try:
        key, chain = Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes()
        client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    except OSError as exc:
        raise SystemExit(f"TLS files: cannot read ({exc})") from None
    credentials = grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
    return server.add_secure_port(config.address, credentials)


async def _serve(config: ServerConfig) -> None:
    server, port = await create_server(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening", extra={"host": config.host, "port": port, "models": str(config.models),
                                 "tls": bool(config.tls_cert), "mutual_tls": bool(config.tls_client_ca),
                                 "authentication": bool(config.tokens_file)})
    await stop.wait()
    log.info("shutting down", extra={"grace_seconds": config.grace_seconds})
    await server.stop()
    log.info("stopped")


def serve(config: ServerConfig) -> int:
    logs.configure(config.log_level)
    asyncio.run(_serve(config))
    return 0
