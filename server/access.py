"""Who may call what: the role each RPC needs and every workspace a request names.

Health and reflection are open. Writes (upserts, deletes, feedback, outcomes)
need a `writer` token; every other RPC of the API needs a `reader`. A request
may name workspaces in several places (its own `workspace_id`, each deal's,
each added deal of a scenario ...): `named_workspaces` finds them all by
walking the request type's descriptor once, so a field added to the API later
is checked without a change here. Protobuf only; no gRPC.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from server.auth import Principal, Role

WORKSPACE_FIELD = "workspace_id"
# The caller of the call being served, set by the interceptor (None without a
# tokens file): for a servicer that parses part of its request itself.
CALLER: ContextVar[Principal | None] = ContextVar("vectoros_caller", default=None)
OPEN_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
})
WRITE_METHODS = frozenset({
    "/vectoros.v1.SimilarityService/UpsertDeals",
    "/vectoros.v1.SimilarityService/DeleteDeals",
    "/vectoros.v1.InsightService/RecordFeedback",
    "/vectoros.v1.InsightService/RecordOutcome",
})


def required_role(method: str) -> Role | None:
    """The role `method` (``/package.Service/Method``) needs; None when it is open."""
    service = method.lstrip("/").partition("/")[0]
    if service in OPEN_SERVICES:
        return None
    return Role.WRITER if method in WRITE_METHODS else Role.READER


# (field name, path label, repeated, sub-plan or None for the workspace string itself)
_Plan = tuple[tuple[str, bool, "Any"], ...]
_plans: dict[str, _Plan] = {}


def _plan(descriptor: Descriptor, visiting: frozenset[str] = frozenset()) -> _Plan:
    """The fields of `descriptor` that are, or lead to, a `workspace_id`."""
    cached = _plans.get(descriptor.full_name)
    if cached is not None:
        return cached
    steps = []
    for field in descriptor.fields:
        if field.name == WORKSPACE_FIELD and field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
            steps.append((field.name, False, None))
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not field.message_type.GetOptions().map_entry:
            child = field.message_type
            if child.full_name in visiting or child.full_name.startswith("google.protobuf."):
                continue
            sub = _plan(child, visiting | {descriptor.full_name})
            if sub:
                steps.append((field.name, field.is_repeated, sub))
    plan = tuple(steps)
    if not visiting:
        _plans[descriptor.full_name] = plan
    return plan


def _walk(message: Any, plan: _Plan, prefix: str) -> Iterator[tuple[str, str]]:
    for name, repeated, sub in plan:
        if sub is None:
            value = getattr(message, name)
            if value:
                yield f"{prefix}{name}", value
        elif repeated:
            for i, item in enumerate(getattr(message, name)):
                yield from _walk(item, sub, f"{prefix}{name}[{i}].")
        elif message.HasField(name):
            yield from _walk(getattr(message, name), sub, f"{prefix}{name}.")


def named_workspaces(request: Any) -> Iterator[tuple[str, str]]:
    """(field path, workspace id) for every non-empty workspace id in `request`,
    for example ``("deals[3].workspace_id", "acme")``."""
    return _walk(request, _plan(request.DESCRIPTOR), "")


def check_named_workspaces(message: Any, prefix: str) -> None:
    """The interceptor's workspace check, for a message a servicer parsed itself
    (EmbedDeals reads its deals from raw bytes, which the interceptor cannot
    see into): every workspace `message` names must be held by this call's
    caller. Field paths start with `prefix` (e.g. ``deals[2].``)."""
    principal = CALLER.get()
    if principal is None:
        return
    for field, workspace in _walk(message, _plan(message.DESCRIPTOR), prefix):
        principal.require_workspace(field, workspace)
