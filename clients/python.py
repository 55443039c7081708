"""A thin Python client for VectorOS AI Core.

It owns one channel, exposes one stub per service, and sets a default deadline
on every call so that a caller never hangs on a stuck server:

    from clients import VectorOSClient

    with VectorOSClient("127.0.0.1:50051") as client:
        response = client.forecast.Forecast(request)          # stub, default deadline
        client.wait_until_serving("vectoros.v1.ForecastService")

Errors are `grpc.RpcError`; `field_violations(error)` returns the fields named
by an INVALID_ARGUMENT answer.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vectoros.v1 import (
    embedding_pb2_grpc,
    forecast_pb2_grpc,
    insight_pb2_grpc,
    scoring_pb2_grpc,
    similarity_pb2_grpc,
)

MIB = 1024 * 1024


class _Deadline(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds a default timeout to calls that do not set their own."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def _with_deadline(self, details: Any) -> Any:
        if details.timeout is not None:
            return details
        return details._replace(timeout=self.seconds)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_deadline(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_deadline(client_call_details), request)


class VectorOSClient:
    def __init__(self, address: str, *, timeout: float = 30.0, max_message_mb: int = 16) -> None:
        raw = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", max_message_mb * MIB),
                ("grpc.max_send_message_length", max_message_mb * MIB),
            ],
        )
        self._raw = raw
        self.channel = grpc.intercept_channel(raw, _Deadline(timeout))
        self.embedding = embedding_pb2_grpc.EmbeddingServiceStub(self.channel)
        self.similarity = similarity_pb2_grpc.SimilarityServiceStub(self.channel)
        self.scoring = scoring_pb2_grpc.ScoringServiceStub(self.channel)
        self.forecast = forecast_pb2_grpc.ForecastServiceStub(self.channel)
        self.insight = insight_pb2_grpc.InsightServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def serving(self, service: str = "") -> bool:
        """Whether the server reports `service` (fully qualified) as SERVING."""
        try:
            status = self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        except grpc.RpcError:
            return False
        return status == health_pb2.HealthCheckResponse.SERVING

    def wait_until_serving(self, service: str = "", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.serving(service):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service or 'server'} not SERVING after {timeout} s")
            time.sleep(0.2)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VectorOSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, rule) pairs from an INVALID_ARGUMENT error's BadRequest detail."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                bad_request = error_details_pb2.BadRequest()
                if detail.Unpack(bad_request):
                    return [(v.field, v.description) for v in bad_request.field_violations]
    return []
