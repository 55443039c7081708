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

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server import logs
from server.config import MIB, ServerConfig
from server.engines.embedding import load_embedder
from server.engines.scoring import load_scorer
from server.interceptors import ErrorAndLogInterceptor
from server.models.registry import ModelRegistry
from server.services.forecast import ForecastServicer
from server.services.scoring import ScoringServicer
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
# A model-backed service is SERVING while a production version of its model is loaded.
MODEL_OF_SERVICE = {SCORING: "scorer", EMBEDDING: "embedder"}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class VectorOSServer:
    """A gRPC server with its health service and background tasks."""

    grpc_server: grpc.aio.Server
    health: health.aio.HealthServicer
    config: ServerConfig
    registry: ModelRegistry
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task] = field(default_factory=list)

    async def start(self) -> None:
        await self.grpc_server.start()
        self.tasks.append(asyncio.create_task(self.registry.run(self.config.model_poll_seconds, self.stopping)))

    async def stop(self, grace: float | None = None) -> None:
        """Mark everything NOT_SERVING, stop taking calls, drain, clean up."""
        self.stopping.set()
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(self.config.grace_seconds if grace is None else grace)
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def wait_for_termination(self) -> None:
        await self.grpc_server.wait_for_termination()


async def create_server(config: ServerConfig) -> tuple[VectorOSServer, int]:
    """Build the server and bind its port; returns the server and the bound port."""
    server = grpc.aio.server(
        interceptors=[ErrorAndLogInterceptor()],
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

    forecast_pb2_grpc.add_ForecastServiceServicer_to_server(ForecastServicer(), server)
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(ScoringServicer(registry), server)
    # Services whose issue has not landed are not registered: gRPC answers
    # UNIMPLEMENTED for them, and their health says NOT_SERVING.
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for name in SERVICES:
        await health_servicer.set(name, NOT_SERVING)
    await health_servicer.set(FORECAST, SERVING)

    async def model_changed(model_name: str) -> None:
        for service, needed in MODEL_OF_SERVICE.items():
            if needed == model_name and service in registered:
                serving = registry.status(model_name).production is not None
                await health_servicer.set(service, SERVING if serving else NOT_SERVING)

    registered = {SCORING}
    for model_name in set(MODEL_OF_SERVICE.values()):
        await model_changed(model_name)
    loop = asyncio.get_running_loop()
    # `run()` calls listeners on the event loop's thread.
    registry.add_listener(lambda model_name: loop.create_task(model_changed(model_name)))

    reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(config.address)
    if port == 0:
        raise SystemExit(f"cannot bind {config.address}")
    return VectorOSServer(grpc_server=server, health=health_servicer, config=config, registry=registry), port


async def _serve(config: ServerConfig) -> None:
    server, port = await create_server(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening", extra={"host": config.host, "port": port, "models": str(config.models)})
    await stop.wait()
    log.info("shutting down", extra={"grace_seconds": config.grace_seconds})
    await server.stop()
    log.info("stopped")


def serve(config: ServerConfig) -> int:
    logs.configure(config.log_level)
    asyncio.run(_serve(config))
    return 0
