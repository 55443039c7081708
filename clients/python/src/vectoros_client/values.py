"""Plain Python values for the API's shared messages: `Deal` and its parts,
`ModelRef`, `ModelInfo`, the enums as string enums, and time conversion.

Times are timezone-aware `datetime`s (a naive one is refused rather than
guessed at); an unset Timestamp reads as None. An enum number this client does
not know (from a newer server) reads as the enum's ``UNSPECIFIED``; the raw
message stays reachable as `.proto` on every result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from vectoros_client.v1 import common_pb2

E = TypeVar("E", bound=StrEnum)


def set_time(message: Message, name: str, value: datetime | None, where: str) -> None:
    """Set the Timestamp field `name` of `message` from an aware datetime (None leaves it unset)."""
    if value is None:
        return
    if not isinstance(value, datetime):
        raise TypeError(f"{where}: must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{where}: must be timezone-aware (got naive {value.isoformat()}); use tzinfo=UTC")
    getattr(message, name).FromDatetime(value.astimezone(UTC))


def get_time(message: Message, name: str) -> datetime | None:
    """The Timestamp field `name` of `message` as an aware UTC datetime, None when unset."""
    if not message.HasField(name):
        return None
    stamp: Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


def enum_number(kind: type[E], value: E | str | int, proto_enum: Any, prefix: str, where: str) -> int:
    """The proto number of an enum given as the string enum, its text, or the proto number."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in proto_enum.values():
            raise ValueError(f"{where}: {value} is not a {proto_enum.DESCRIPTOR.name} number")
        return value
    try:
        member = kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind if m.value != "unspecified")
        raise ValueError(f"{where}: must be one of {choices}; got {value!r}") from None
    return proto_enum.Value(prefix + member.value.upper())


def enum_member(kind: type[E], number: int, proto_enum: Any, prefix: str) -> E:
    try:
        name = proto_enum.Name(number)
    except ValueError:
        return kind("unspecified")
    return kind(name[len(prefix):].lower())


class Outcome(StrEnum):
    UNSPECIFIED = "unspecified"
    OPEN = "open"
    WON = "won"
    LOST = "lost"


def outcome_number(value: Outcome | str | int, where: str) -> int:
    return enum_number(Outcome, value, common_pb2.DealOutcome, "DEAL_OUTCOME_", where)


def outcome_member(number: int) -> Outcome:
    return enum_member(Outcome, number, common_pb2.DealOutcome, "DEAL_OUTCOME_")


@dataclass(frozen=True)
class StageChange:
    stage: str
    entered_time: datetime


@dataclass(frozen=True)
class ActivityCounts:
    emails: int = 0
    calls: int = 0
    meetings: int = 0
    demos: int = 0
    notes: int = 0
    tasks: int = 0


_TEXT = ("id", "workspace_id", "name", "company", "industry", "region", "notes", "currency", "stage", "owner_id")
_TIMES = ("created_time", "expected_close_time", "stage_entered_time", "last_activity_time", "closed_time")


@dataclass(frozen=True, kw_only=True)
class Deal:
    """A deal as the API's `vectoros.v1.Deal` holds it (see protos/vectoros/v1/common.proto
    for each field's meaning and unit). Only `id` is always required."""

    id: str
    workspace_id: str = ""
    name: str = ""
    company: str = ""
    industry: str = ""
    region: str = ""
    notes: str = ""
    value: float = 0.0
    currency: str = ""
    stage: str = ""
    probability: float | None = None
    created_time: datetime | None = None
    expected_close_time: datetime | None = None
    stage_entered_time: datetime | None = None
    stage_history: tuple[StageChange, ...] = ()
    activity_counts: ActivityCounts | None = None
    last_activity_time: datetime | None = None
    competitor_present: bool | None = None
    outcome: Outcome = Outcome.UNSPECIFIED
    closed_time: datetime | None = None
    owner_id: str = ""
    contact_count: int = 0
    numeric_attributes: Mapping[str, float] = field(default_factory=dict)
    categorical_attributes: Mapping[str, str] = field(default_factory=dict)

    def to_proto(self, where: str = "deal") -> common_pb2.Deal:
        """The `vectoros.v1.Deal` message; a value of the wrong type names its field."""
        message = common_pb2.Deal()
        name = ""
        try:
            for name in _TEXT:
                setattr(message, name, getattr(self, name))
            name = "value"
            message.value = self.value
            name = "contact_count"
            message.contact_count = self.contact_count
            name = "probability"
            if self.probability is not None:
                message.probability = self.probability
            name = "competitor_present"
            if self.competitor_present is not None:
                message.competitor_present = self.competitor_present
            for name in ("numeric_attributes", "categorical_attributes"):
                getattr(message, name).update(getattr(self, name))
            name = "activity_counts"
            if self.activity_counts is not None:
                counts = self.activity_counts
                message.activity_counts.CopyFrom(common_pb2.ActivityCounts(
                    emails=counts.emails, calls=counts.calls, meetings=counts.meetings, demos=counts.demos,
                    notes=counts.notes, tasks=counts.tasks,
                ))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}.{name}: {exc}") from None
        for name in _TIMES:
            set_time(message, name, getattr(self, name), f"{where}.{name}")
        for index, change in enumerate(self.stage_history):
            if not isinstance(change, StageChange):
                raise TypeError(f"{where}.stage_history[{index}]: must be a StageChange, got {type(change).__name__}")
            entry = message.stage_history.add(stage=change.stage)
            set_time(entry, "entered_time", change.entered_time, f"{where}.stage_history[{index}].entered_time")
        message.outcome = outcome_number(self.outcome, f"{where}.outcome")
        return message

    @classmethod
    def from_proto(cls, message: common_pb2.Deal) -> Deal:
        counts = message.activity_counts
        return cls(
            **{name: getattr(message, name) for name in _TEXT},
            **{name: get_time(message, name) for name in _TIMES},
            value=message.value,
            probability=message.probability if message.HasField("probability") else None,
            stage_history=tuple(StageChange(c.stage, get_time(c, "entered_time")) for c in message.stage_history),
            activity_counts=ActivityCounts(counts.emails, counts.calls, counts.meetings, counts.demos, counts.notes,
                                           counts.tasks) if message.HasField("activity_counts") else None,
            competitor_present=message.competitor_present if message.HasField("competitor_present") else None,
            outcome=outcome_member(message.outcome),
            contact_count=message.contact_count,
            numeric_attributes=MappingProxyType(dict(message.numeric_attributes)),
            categorical_attributes=MappingProxyType(dict(message.categorical_attributes)),
        )


DealLike = Deal | common_pb2.Deal


def deal_message(deal: DealLike, where: str) -> common_pb2.Deal:
    """A `vectoros.v1.Deal` from a `Deal` or the message itself (used as is)."""
    if isinstance(deal, Deal):
        return deal.to_proto(where)
    if isinstance(deal, Message) and deal.DESCRIPTOR.full_name == common_pb2.Deal.DESCRIPTOR.full_name:
        return deal
    raise TypeError(f"{where}: must be a vectoros_client.Deal or a vectoros.v1.Deal message, got {type(deal).__name__}")


def deal_messages(deals: Sequence[DealLike], where: str = "deals") -> list[common_pb2.Deal]:
    """`vectoros.v1.Deal` messages from a sequence of deals, each error naming ``deals[i]``."""
    if isinstance(deals, Deal | Message | str):
        raise TypeError(f"{where}: must be a sequence of deals, not one (wrap it in a list)")
    return [deal_message(deal, f"{where}[{index}]") for index, deal in enumerate(deals)]


@dataclass(frozen=True)
class ModelRef:
    """The model version that produced an answer."""

    name: str
    version: int

    @classmethod
    def from_proto(cls, message: common_pb2.ModelRef) -> ModelRef:
        return cls(message.name, message.version)


@dataclass(frozen=True)
class ModelInfo:
    """What the server knows about a loaded model version."""

    model: ModelRef
    kind: str
    created_time: datetime | None
    metrics: Mapping[str, float]
    features: tuple[str, ...]
    labels: tuple[str, ...]
    package_version: str
    training_data_sha256: str

    @classmethod
    def from_proto(cls, message: common_pb2.ModelInfo) -> ModelInfo:
        return cls(
            ModelRef.from_proto(message.model), message.kind, get_time(message, "created_time"),
            MappingProxyType(dict(message.metrics)), tuple(message.features), tuple(message.labels),
            message.package_version, message.training_data_sha256,
        )
