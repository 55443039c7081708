"""The project's exceptions. Each carries the *name* of the status it maps to.

Engines, stores, the registry and training raise these; they know nothing of
any transport. The gRPC interceptor (`server.interceptors`) alone turns a
code name into a gRPC status; anything else that escapes a handler becomes
INTERNAL with a generic message and a logged traceback.
"""

from __future__ import annotations

# The code names the project uses, spelled as gRPC (and google.rpc.Code) spell them.
CODES = frozenset(
    {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "UNAVAILABLE", "RESOURCE_EXHAUSTED",
     "CANCELLED", "PERMISSION_DENIED", "UNAUTHENTICATED", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL"}
)


class VectorOSError(Exception):
    """Base class: a message meant for the caller and the name of its status code."""

    code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.code not in CODES:
            raise TypeError(f"{cls.__name__}.code: {cls.code!r} is not one of {sorted(CODES)}")


class InvalidInput(VectorOSError):
    """The request breaks a rule. `field` is the path of the offending field,
    for example ``deals[3].value``; the message reads ``<field>: <rule>``."""

    code = "INVALID_ARGUMENT"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


def unparsable(field: str, error: object) -> InvalidInput:
    """The error for bytes at `field` that protobuf could not parse (`error`, its
    DecodeError): mostly a string field that is not valid UTF-8."""
    return InvalidInput(field, f"could not be parsed ({error}); every string field must be valid UTF-8")


class NotFound(VectorOSError):
    code = "NOT_FOUND"


class FailedPrecondition(VectorOSError):
    code = "FAILED_PRECONDITION"


class Unavailable(VectorOSError):
    """The service cannot answer now (for example no model is loaded yet)."""

    code = "UNAVAILABLE"


class Overloaded(VectorOSError):
    """A bounded queue is full; the caller should back off and retry."""

    code = "RESOURCE_EXHAUSTED"


class Unauthenticated(VectorOSError):
    """No credentials, or credentials the server does not accept. The message never
    repeats what the caller sent."""

    code = "UNAUTHENTICATED"


class PermissionDenied(VectorOSError):
    """The caller is known but may not do this (a workspace it does not hold, a
    write with a read-only token). `field` names what was refused."""

    code = "PERMISSION_DENIED"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class Cancelled(VectorOSError):
    """The caller went away or its deadline passed while the work was running."""

    code = "CANCELLED"
