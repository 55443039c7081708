"""What only the embedded store has: data on disk across reopen and kill -9, and
one process per collection."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from server.stores.base import DEAL_ID, OUTCOME, WORKSPACE, DealPoint, StoreError, point_id
from server.stores.edge import INFO_FILE, EdgeStore

DIM = 16
ROOT = Path(__file__).resolve().parents[2]


def _points(count: int, workspace: str = "acme", seed: int = 0) -> list[DealPoint]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        DealPoint(point_id(workspace, f"d{i}"), vectors[i], {WORKSPACE: workspace, DEAL_ID: f"d{i}", OUTCOME: "won"})
        for i in range(count)
    ]


def test_reopen_keeps_points_and_completeness(tmp_path):
    store = EdgeStore(tmp_path)
    collection = store.create_collection("embedder", 4, DIM)
    points = _points(300)
    collection.upsert(points)
    before = collection.search("acme", points[7].vector, limit=5)
    collection.close()
    store.mark_complete("embedder-v4")

    again = EdgeStore(tmp_path)
    (info,) = again.list_collections()
    assert (info.name, info.embedder_version, info.dimension, info.complete) == ("embedder-v4", 4, DIM, True)
    reopened = again.open_collection("embedder-v4")
    assert reopened.count("acme", "won") == 300
    after = reopened.search("acme", points[7].vector, limit=5)
    assert [h.point.point_id for h in after] == [h.point.point_id for h in before]
    reopened.close()


def test_acknowledged_upserts_survive_kill_9(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        from server.stores.edge import EdgeStore
        from server.stores.base import DealPoint, point_id
        store = EdgeStore(sys.argv[1])
        collection = store.create_collection("embedder", 1, {DIM})
        rng = np.random.default_rng(3)
        for batch in range(4):
            vectors = rng.standard_normal((250, {DIM})).astype(np.float32)
            collection.upsert([
                DealPoint(point_id("acme", f"d{{batch}}-{{i}}"), vectors[i], {{"workspace_id": "acme", "deal_id": "x"}})
                for i in range(250)
            ])
        print("acknowledged", flush=True)
        sys.stdin.read()  # wait to be killed, with nothing flushed or closed
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "vectors")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,  # `python -c` imports the project from the working directory
    )
    try:
        assert process.stdout.readline().strip() == "acknowledged"
    finally:
        process.kill()  # SIGKILL
        process.wait(30)
    assert process.returncode == -9
    collection = EdgeStore(tmp_path / "vectors").open_collection("embedder-v1")
    assert collection.count("acme") == 1000
    collection.close()


def test_one_process_per_collection(tmp_path):
    store = EdgeStore(tmp_path)
    collection = store.create_collection("embedder", 1, DIM)
    with pytest.raises(StoreError, match="open in another process"):
        store.open_collection("embedder-v1")
    collection.close()
    store.open_collection("embedder-v1").close()


def test_a_half_created_collection_is_ignored_and_replaced(tmp_path):
    store = EdgeStore(tmp_path)
    (tmp_path / "embedder-v2" / "shard").mkdir(parents=True)  # died before collection.json
    (tmp_path / "not-a-collection").mkdir()
    assert store.list_collections() == []
    collection = store.create_collection("embedder", 2, DIM)
    collection.upsert(_points(3))
    collection.close()
    assert (tmp_path / "embedder-v2" / INFO_FILE).exists()
    assert [c.name for c in store.list_collections()] == ["embedder-v2"]
    store.drop_collection("embedder-v2")
    assert not (tmp_path / "embedder-v2").exists()
