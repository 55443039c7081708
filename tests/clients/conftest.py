"""One real server for the client tests: `vectoros serve` on port 0 with a real
scorer (trained here on synthetic deals), the exported embedder, the embedded
vector store and ledger, and authentication on (a tokens file made by
`server.auth.create_token`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from server.auth import create_token
from server.models.publish import publish
from tests.support.serverproc import ServerProcess, start_server
from training import embedder as embedder_export
from training.records import write_deals
from training.scorer import TrainConfig, train_scorer
from training.synth import DATE_COLUMNS, synth_deals

# The workspaces the writer token holds, one per test module so that their
# deals do not meet; FOREIGN is held by no token but the admin's.
WORKSPACES = ("py-sync", "py-async", "py-errors", "examples", "interop", "acme")
FOREIGN = "globex"
TINY = TrainConfig(folds=2, grid=({"max_depth": 3, "learning_rate": 0.2, "min_child_weight": 1},), max_trees=40,
                   progress=False, golden_rows=4)


@dataclass(frozen=True)
class Served:
    process: ServerProcess
    writer: str  # writer token holding WORKSPACES
    reader: str  # reader token holding WORKSPACES
    tokens_file: Path

    @property
    def address(self) -> str:
        return self.process.address


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("client-models")
    data = write_deals(synth_deals(400, seed=13), folder / "deals.jsonl", custom_dates=DATE_COLUMNS)
    publish(train_scorer(data, folder / "scorer", TINY).out_dir, folder / "models")
    publish(embedder_export.cached_export(), folder / "models")
    return folder / "models"


@pytest.fixture(scope="session")
def served(model_repository, tmp_path_factory) -> Served:
    root = tmp_path_factory.mktemp("client-server")
    tokens = root / "tokens.json"
    writer, _ = create_token(tokens, "writer", WORKSPACES, name="client tests")
    reader, _ = create_token(tokens, "reader", WORKSPACES, name="client tests, read only")
    process = start_server("--models", str(model_repository), "--data-dir", str(root / "data"),
                           "--tokens-file", str(tokens), timeout=120)
    yield Served(process, writer, reader, tokens)
    assert process.terminate() == 0
