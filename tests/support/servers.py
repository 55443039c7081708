"""Servicers on a real in-process grpc.aio server (port 0, the server's interceptor),
for servicer tests that need no server process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from server.engines.scoring import ScoringEngine
from server.interceptors import RpcInterceptor
from server.services.scoring import ScoringServicer
from vectoros.v1 import scoring_pb2_grpc


@contextlib.asynccontextmanager
async def scoring_stub(registry, similarity=None) -> AsyncIterator[scoring_pb2_grpc.ScoringServiceStub]:
    """A ScoringService over `registry` (a ModelRegistry or a fake) and, optionally,
    the similarity engine; yields a stub on a channel to it."""
    server = grpc.aio.server(interceptors=[RpcInterceptor()])
    engine = ScoringEngine(registry, similarity)
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(ScoringServicer(engine), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield scoring_pb2_grpc.ScoringServiceStub(channel)
    finally:
        await server.stop(None)
