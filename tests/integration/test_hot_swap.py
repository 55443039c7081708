"""Hot swap over a real server process: publishing and rolling back under a stream
of concurrent ScoreDeal calls loses no call, and every answer names a version."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import defaultdict

import grpc
import pytest

from tests.support.serverproc import start_server
from training.records import write_deals
from training.scorer import TrainConfig, train_scorer
from training.synth import DATE_COLUMNS, synth_deals
from vectoros.core.deal_codec.proto import deal_to_proto
from vectoros.v1 import scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)

FAST = TrainConfig(
    grid=({"max_depth": 3, "learning_rate": 0.1, "min_child_weight": 1},), max_trees=100, progress=False
)


def vectoros(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "vectoros", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hot-swap")
    records = synth_deals(1200, seed=5)
    data = write_deals(records, folder / "deals.csv", custom_dates=DATE_COLUMNS)
    return train_scorer(data, folder / "artifact", FAST).out_dir, records


def test_publish_and_rollback_under_concurrent_score_deal(artifact, tmp_path):
    out_dir, records = artifact
    models = tmp_path / "models"
    vectoros("publish", str(out_dir), "--models", str(models))
    server = start_server("--models", str(models), "--data-dir", str(tmp_path / "data"), "--model-poll-seconds", "0.1")
    requests = [scoring_pb2.ScoreDealRequest(deal=deal_to_proto(record)) for record in records[:200]]
    seen: dict[int, list[int]] = defaultdict(list)  # thread -> versions in call order
    errors: list[str] = []
    stop = threading.Event()

    def caller(thread: int) -> None:
        with server.channel() as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            i = thread
            while not stop.is_set():
                try:
                    response = stub.ScoreDeal(requests[i % len(requests)], timeout=10)
                except grpc.RpcError as error:
                    errors.append(f"{error.code().name}: {error.details()}")
                else:
                    seen[thread].append(response.score.model.version)
                i += 4

    def wait_for(version: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(versions and versions[-1] == version for versions in list(seen.values())):
                return
            time.sleep(0.05)
        raise AssertionError(f"version {version} not served within {timeout} s")

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        wait_for(1)
        vectoros("publish", str(out_dir), "--models", str(models))  # version 2 goes to production
        wait_for(2)
        time.sleep(0.3)
        vectoros("models", "rollback", "scorer", "--models", str(models))  # back to version 1
        wait_for(1)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert server.terminate() == 0

    assert errors == []
    calls = [version for versions in seen.values() for version in versions]
    assert len(calls) > 100 and set(calls) == {1, 2}
    for versions in seen.values():
        # In call order each thread sees 1, then 2, then 1 again: a swap is one
        # reference change, so no call flips back and forth around it.
        runs = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
        assert runs == [1, 2, 1], runs[:10]
