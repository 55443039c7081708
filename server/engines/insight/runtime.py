"""`InsightRuntime`: the insight engine and the pipeline monitor built from the
server config, with their life cycle (ready, warm, close). No grpc:
`server.services.insight` registers a servicer over a runtime.

`InsightRuntime.open(registry, config, similarity)` opens the ledger
(``<data_dir>/ledger.sqlite``), builds the history index over the similarity
engine, the generator (`make_generator`: Claude when `config.anthropic_api_key`
is set, else the rules), the insight engine and the monitor.
"""

from __future__ import annotations

import asyncio
import logging

from server.engines.insight.claude import ClaudeGenerator
from server.engines.insight.context import SCORER, InsightGenerator
from server.engines.insight.engine import InsightEngine
from server.engines.insight.history_index import HistoryIndex
from server.engines.insight.monitor import PipelineMonitor
from server.engines.insight.rules import RulesGenerator
from server.engines.scoring import ScoringEngine
from server.ledger import Ledger

log = logging.getLogger("vectoros.insight")


def make_generator(config) -> InsightGenerator:
    """Claude when an API key is configured, else the rules."""
    if config.anthropic_api_key:
        return ClaudeGenerator(config.anthropic_api_key, config.anthropic_model)
    return RulesGenerator()


class InsightRuntime:
    """The insight engine and the monitor with their life cycle, for `server.app`.

    `similarity` is the similarity service's life cycle (`.engine`, the opened
    `SimilarityEngine`, and `.ready()`); `registry` the model registry."""

    def __init__(self, engine: InsightEngine, monitor: PipelineMonitor, similarity, registry) -> None:
        self.engine = engine
        self.monitor = monitor
        self._similarity = similarity
        self._registry = registry

    @classmethod
    async def open(cls, registry, config, similarity, scoring: ScoringEngine | None = None) -> InsightRuntime:
        """Build everything from `config` (`data_dir`, `anthropic_api_key`,
        `anthropic_model`); `scoring` is the server's one `ScoringEngine` (else one
        over `registry` and the similarity engine). Call `close()` after the
        server stopped (before the similarity store closes)."""
        ledger = await asyncio.to_thread(Ledger.in_dir, config.data_dir)
        history = HistoryIndex(similarity.engine)
        generator = await asyncio.to_thread(make_generator, config)
        scoring = scoring or ScoringEngine(registry, similarity.engine)
        engine = InsightEngine(registry, similarity.engine, ledger, generator, history, scoring=scoring)
        monitor = PipelineMonitor(registry, history, ledger, scoring)
        log.info("insight service", extra={"generator": generator.id, "ledger": str(ledger.path)})
        return cls(engine, monitor, similarity, registry)

    def ready(self) -> bool:
        """SERVING needs a production scorer and an open similarity store."""
        return self._registry.status(SCORER).production is not None and self._similarity.ready()

    def warm(self) -> None:
        """Build the workspace history index now instead of on the first request
        (blocking: one scroll of the store). Errors are logged; the first request
        builds it then."""
        try:
            self.engine.history.ensure_built()
        except Exception:
            log.exception("workspace history not built yet")

    async def close(self) -> None:
        """After the server stopped: stop following store writes, close the Claude
        client and the ledger."""
        self.engine.history.close()
        close = getattr(self.engine.generator, "close", None)
        if close is not None:
            await close()
        await asyncio.to_thread(self.engine.ledger.close)
