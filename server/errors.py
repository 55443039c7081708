"""The project's exceptions. Each carries the gRPC status code it maps to.

Engines raise these; one interceptor (`server.interceptors`) turns them into
statuses. Anything else that escapes a handler becomes INTERNAL with a generic
message and a logged traceback.
"""

from __future__ import annotations

import grpc


class VectorOSError(Exception):
    """Base class: a message meant for the caller and the status code it maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(VectorOSError):
    """The request breaks a rule. `field` is the path of the offending field,
    for example ``deals[3].value``; the message reads ``<field>: <rule>``."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


def unparsable(field: str, error: object) -> InvalidInput:
    """The error for bytes at `field` that protobuf could not parse (`error`, its
    DecodeError): mostly a string field that is not valid UTF-8."""
    return InvalidInput(field, f"could not be parsed ({error}); every string field must be valid UTF-8")


class NotFound(VectorOSError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(VectorOSError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(VectorOSError):
    """The service cannot answer now (for example no model is loaded yet)."""

    code = grpc.StatusCode.UNAVAILABLE


class Overloaded(VectorOSError):
    """A bounded queue is full; the caller should back off and retry."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Cancelled(VectorOSError):
    """The caller went away or its deadline passed while the work was running."""

    code = grpc.StatusCode.CANCELLED
