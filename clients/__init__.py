"""Client libraries over the generated stubs (`vectoros.v1`)."""

from clients.python import VectorOSClient

__all__ = ["VectorOSClient"]
