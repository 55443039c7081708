"""What a generator produces: insights with their evidence, the usage of a
generation, and the enums of the insight API (types, feedback ratings, export
formats)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class InsightType(StrEnum):
    RISK = "risk"
    OPPORTUNITY = "opportunity"
    NEXT_ACTION = "next_action"
    PREDICTION = "prediction"


class Rating(StrEnum):
    HELPFUL = "helpful"
    NOT_HELPFUL = "not_helpful"
    INCORRECT = "incorrect"


class ExportFormat(StrEnum):
    LABELLED_EXAMPLES = "labelled_examples"
    CHAT_FINETUNE = "chat_finetune"
    SCORER_ROWS = "scorer_rows"


# --- what a generator produces ------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """What an insight rests on: score factors or statistics by name (see
    `InsightContext.evidence_names`) and ids of similar deals in the context."""

    factor_names: tuple[str, ...] = ()
    similar_deal_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Insight:
    id: str
    type: InsightType
    title: str
    description: str
    confidence: float
    actions: tuple[str, ...] = ()
    evidence: Evidence = Evidence()


@dataclass(frozen=True)
class Usage:
    """Tokens billed by a language model (0 for rules) and wall time in ms."""

    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0


@dataclass(frozen=True)
class GeneratedInsights:
    """A generator's answer. `generator` is "rules" or "claude:<model id>";
    `fallback_reason` says why the configured generator was not used (else "")."""

    insights: tuple[Insight, ...]
    win_probability: float
    win_probability_reasoning: str
    generator: str
    fallback_reason: str = ""
    usage: Usage = Usage()

