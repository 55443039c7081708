"""`InsightEngine`: insights on one deal, stored in the ledger; feedback on them,
the deals' outcomes, and the ledger's export.

A request for insights on one deal runs:

1. the scorer (production or canary by deal id) for the win probability and the
   top factors;
2. the similarity engine for the most similar *closed* deals of the same
   workspace, with their outcomes (the deal's stored vector is reused when its
   text has not changed; otherwise the deal is embedded);
3. the workspace's own history (`WorkspaceHistory`: win rate by industry, stage
   reached, size band, competitor, contacts and close-date slippage; days per
   stage; the activity cadence of won deals), kept by `HistoryIndex`
   incrementally from the similarity store's write notifications, so a request
   never scans the store;
4. a generator (`InsightGenerator`: the rules in `server.engines.insight.rules`,
   or Claude in `server.engines.insight.claude`, which falls back to the rules),
   whose `GeneratedInsights` are stored in the ledger under a new id.

The cache. A set is stored with its context's key (`context_key`: the deal
snapshot, the scorer and embedder versions, the generator id and the UTC day).
Within a day the same key returns the stored set (same id, `cached=True`)
without calling the generator. Sets produced by a fallback are not cached, so
the next request tries the configured generator again.

No grpc here; `server.services.insight` translates.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from server.engines.insight.codecs import context_key, insights_from_json, insights_to_json
from server.engines.insight.context import (
    InsightContext,
    InsightGenerator,
    ModelRef,
    ScoreFactor,
    ScoreView,
    SimilarDeal,
)
from server.engines.insight.export import export_lines, take
from server.engines.insight.history import StoredDeal
from server.engines.insight.history_index import HistoryIndex
from server.engines.insight.types import ExportFormat, GeneratedInsights, Rating, Usage
from server.engines.scoring import ScoringEngine
from server.engines.similarity import Query, SimilarityEngine, text_sha256
from server.ledger import InsightSetRow, Ledger
from server.stores.base import DealFilter
from vectoros.core.deal_codec.payload import snapshot_from_json, snapshot_to_json
from vectoros.core.deal_text import deal_to_text
from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.errors import InvalidInput, NotFound

SIMILAR_DEALS = 10
TOP_FACTORS = 8
MAX_COMMENT_BYTES = 4 * 1024
MAX_IDEMPOTENCY_KEY_BYTES = 256
CLOSED = DealFilter(outcomes=("won", "lost"))


@dataclass(frozen=True)
class InsightResult:
    insight_set_id: str
    generated: GeneratedInsights
    scorer: ModelRef
    embedder: ModelRef
    cached: bool


@dataclass(frozen=True)
class FeedbackResult:
    feedback_id: str
    duplicate: bool


class InsightEngine:
    """Insights on deals, stored in the ledger; feedback, outcomes and export.

    `registry` is the model registry, `similarity` the similarity engine
    (opened), `history` its `HistoryIndex`, `generator` the configured
    `InsightGenerator`, `scoring` the `ScoringEngine` every RPC scores through
    (one over `registry` and `similarity` when not given), so a deal's
    probability here is the one ScoreDeal gives.
    """

    def __init__(
        self,
        registry,
        similarity: SimilarityEngine,
        ledger: Ledger,
        generator: InsightGenerator,
        history: HistoryIndex,
        *,
        similar_deals: int = SIMILAR_DEALS,
        top_factors: int = TOP_FACTORS,
        scoring: ScoringEngine | None = None,
    ) -> None:
        self.registry = registry
        self.similarity = similarity
        self.scoring = scoring or ScoringEngine(registry, similarity)
        # Called with (requested generator id, generator id, fallback reason) after
        # each generation (the server's metrics); None: not observed.
        self.on_generated: Callable[[str, str, str | None], None] | None = None
        self.ledger = ledger
        self.generator = generator
        self.history = history
        self.similar_deals = similar_deals
        self.top_factors = top_factors

    # --- GenerateInsights ---

    async def generate(self, record: DealRecord, *, bypass_cache: bool = False) -> InsightResult:
        """Insights on `record` (checked; `snapshot_at` is the time of the request)."""
        started = _clock()
        workspace_id = record.workspace_id
        if not workspace_id:
            raise InvalidInput("deal.workspace_id", "required")
        now = record.snapshot_at or datetime.now(UTC)
        record = replace(record, snapshot_at=now)
        loaded = self.scoring.resolve(record)
        scorer = ModelRef(loaded.name, loaded.version)
        _, embedder_model = self.similarity.serving()
        embedder = ModelRef(embedder_model.name, embedder_model.version)
        key = context_key(record, scorer, embedder, self.generator.id, now)

        if not bypass_cache:
            day_start = datetime(now.year, now.month, now.day, tzinfo=UTC)
            row = await asyncio.to_thread(self.ledger.cached_insight_set, workspace_id, key, day_start)
            if row is not None:
                return _result_from_row(row, cached=True, latency_ms=_clock() - started)

        history, stored = await asyncio.to_thread(self.history.lookup, workspace_id, record.deal_id)
        (scored,) = await self.scoring.score([record], top_factors=self.top_factors, resolved=[loaded])
        score = scored.result
        similar, embedder = await self._similar(record, stored)
        previous = await asyncio.to_thread(self.ledger.latest_insight_set, workspace_id, record.deal_id, now)
        previous_record = snapshot_from_json(previous.deal_json) if previous is not None else None
        context = InsightContext(
            deal=record,
            now=now,
            score=ScoreView(
                win_probability=score.win_probability,
                risk_level=score.risk_level,
                factors=tuple(ScoreFactor(f.feature, f.value_text, f.contribution) for f in score.top_factors),
                scorer=scorer,
            ),
            embedder=embedder,
            similar=similar,
            history=history,
            previous_expected_close_at=previous_record.expected_close_at if previous_record else None,
            previous_snapshot_at=previous_record.snapshot_at if previous_record else None,
        )
        generated = await self.generator.generate(context)
        if self.on_generated is not None:
            self.on_generated(self.generator.id, generated.generator, generated.fallback_reason)
        latency_ms = _clock() - started
        if generated.generator == self.generator.id and not generated.fallback_reason:
            stored_key = key
        else:
            stored_key = None  # a fallback: the next request tries the configured generator again
        document = context.document()
        document["scorer_custom_dates"] = list(getattr(loaded.model.spec, "custom_dates", ()))
        row = InsightSetRow(
            id=uuid.uuid4().hex,
            workspace_id=workspace_id,
            deal_id=record.deal_id,
            created_at=now,
            generator=generated.generator,
            requested_generator=self.generator.id,
            fallback_reason=generated.fallback_reason,
            scorer_name=scorer.name,
            scorer_version=scorer.version,
            embedder_name=embedder.name,
            embedder_version=embedder.version,
            context_key=stored_key,
            win_probability=generated.win_probability,
            model_win_probability=score.win_probability,
            reasoning=generated.win_probability_reasoning,
            input_tokens=generated.usage.input_tokens,
            output_tokens=generated.usage.output_tokens,
            latency_ms=generated.usage.latency_ms or latency_ms,
            deal_json=snapshot_to_json(record),
            context_json=json.dumps(document, ensure_ascii=False, separators=(",", ":")),
            insights_json=insights_to_json(generated.insights),
        )
        await asyncio.to_thread(self.ledger.add_insight_set, row)
        if not generated.usage.latency_ms:
            generated = replace(generated, usage=replace(generated.usage, latency_ms=latency_ms))
        return InsightResult(row.id, generated, scorer, embedder, cached=False)

    async def _similar(self, record: DealRecord, stored: StoredDeal | None) -> tuple[tuple[SimilarDeal, ...], ModelRef]:
        workspace_id = record.workspace_id
        # The stored vector is the deal's own if its text is unchanged: no embedding.
        query = Query(deal=record)
        if stored is not None and stored.text_sha256 == text_sha256(deal_to_text(record)):
            query = Query(deal_id=record.deal_id)
        try:
            found = await self.similarity.find(workspace_id, query, deal_filter=CLOSED, top_k=self.similar_deals)
        except NotFound:  # deleted since the index saw it
            found = await self.similarity.find(
                workspace_id, Query(deal=record), deal_filter=CLOSED, top_k=self.similar_deals
            )
        similar = tuple(
            SimilarDeal.from_record(m.deal, m.score) for m in found.matches if m.deal.outcome is not Outcome.OPEN
        )
        return similar, ModelRef(found.embedder.name, found.embedder.version)

    # --- RecordFeedback ---

    async def record_feedback(
        self,
        workspace_id: str,
        insight_set_id: str,
        insight_id: str,
        rating: Rating,
        acted_on: bool,
        comment: str,
        idempotency_key: str,
        now: datetime | None = None,
    ) -> FeedbackResult:
        """Store a rating of a set (`insight_id` "") or of one insight of it. An
        empty `idempotency_key` is derived from the content, so the same feedback
        sent twice is recorded once."""
        _require(workspace_id, "workspace_id")
        _require(insight_set_id, "insight_set_id")
        if len(comment.encode("utf-8", "surrogatepass")) > MAX_COMMENT_BYTES:
            raise InvalidInput("comment", f"at most {MAX_COMMENT_BYTES} bytes")
        if len(idempotency_key.encode("utf-8", "surrogatepass")) > MAX_IDEMPOTENCY_KEY_BYTES:
            raise InvalidInput("idempotency_key", f"at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes")
        row = await asyncio.to_thread(self.ledger.insight_set, workspace_id, insight_set_id)
        if row is None:
            # The same answer for an unknown id and another workspace's.
            raise NotFound(f"insight_set_id: no insight set {insight_set_id!r} in workspace {workspace_id!r}")
        if insight_id and insight_id not in {i.id for i in insights_from_json(row.insights_json)}:
            raise NotFound(f"insight_id: no insight {insight_id!r} in insight set {insight_set_id!r}")
        if not idempotency_key:
            idempotency_key = "content:" + hashlib.sha256(
                json.dumps([insight_set_id, insight_id, rating.value, acted_on, comment]).encode()
            ).hexdigest()
        feedback_id, duplicate, same = await asyncio.to_thread(
            self.ledger.add_feedback,
            workspace_id, insight_set_id, insight_id, rating.value, acted_on, comment, idempotency_key,
            now or datetime.now(UTC),
        )
        if not same:
            raise InvalidInput("idempotency_key", "already used for different feedback")
        return FeedbackResult(feedback_id, duplicate)

    # --- RecordOutcome ---

    async def record_outcome(
        self,
        workspace_id: str,
        deal_id: str,
        outcome: Outcome,
        closed_at: datetime | None,
        final_value: float,
        now: datetime | None = None,
    ) -> bool:
        """Record how a deal ended and update the deal in the similarity store, so
        the next retrieval sees the outcome. The deal must be known: stored in the
        similarity store or seen by GenerateInsights (then its newest snapshot is
        stored, closed). Returns True when this exact outcome was already recorded."""
        _require(workspace_id, "workspace_id")
        _require(deal_id, "deal_id")
        if outcome is Outcome.OPEN:
            raise InvalidInput("outcome", "must be won or lost")
        if not (math.isfinite(final_value) and final_value >= 0):
            raise InvalidInput("final_value", f"must be finite and >= 0, got {final_value}")
        now = now or datetime.now(UTC)
        stored = (await asyncio.to_thread(self.history.stored_records, workspace_id, [deal_id])).get(deal_id)
        if stored is None:
            latest = await asyncio.to_thread(self.ledger.latest_insight_set, workspace_id, deal_id)
            if latest is None:
                raise NotFound(f"deal_id: no deal {deal_id!r} in workspace {workspace_id!r}")
            stored = replace(snapshot_from_json(latest.deal_json), snapshot_at=None)
        duplicate = await asyncio.to_thread(
            self.ledger.record_outcome, workspace_id, deal_id, outcome.value, closed_at, final_value, now
        )
        # 0 is proto3's "not set": a lost deal's final value is often not sent, and
        # zeroing its amount would change its text and its size band.
        closed = replace(
            stored, outcome=outcome, closed_at=closed_at or now, value=final_value or stored.value,
            workspace_id=workspace_id,
        )
        if closed != replace(stored, workspace_id=workspace_id):
            await self.similarity.upsert(workspace_id, [closed])
        return duplicate

    # --- ExportTrainingData ---

    async def export(
        self, workspace_id: str, export_format: ExportFormat, since: datetime | None = None, chunk: int = 256
    ) -> AsyncIterator[list[str]]:
        """JSON Lines of the workspace's ledger in `export_format`, `chunk` lines at a
        time (each read in a worker thread)."""
        _require(workspace_id, "workspace_id")
        lines = export_lines(self.ledger, workspace_id, export_format, since)
        while True:
            batch = await asyncio.to_thread(take, lines, chunk)
            if not batch:
                return
            yield batch


def _result_from_row(row: InsightSetRow, *, cached: bool, latency_ms: float) -> InsightResult:
    generated = GeneratedInsights(
        insights=insights_from_json(row.insights_json),
        win_probability=row.win_probability,
        win_probability_reasoning=row.reasoning,
        generator=row.generator,
        fallback_reason=row.fallback_reason,
        # A cached answer costs no tokens now; the latency is the lookup's.
        usage=Usage(0, 0, latency_ms),
    )
    return InsightResult(
        row.id, generated, ModelRef(row.scorer_name, row.scorer_version),
        ModelRef(row.embedder_name, row.embedder_version), cached=cached,
    )


def _clock() -> float:
    """Milliseconds on a monotonic clock."""
    return time.perf_counter() * 1000.0


def _require(value: str, name: str) -> None:
    if not value:
        raise InvalidInput(name, "required")
