import asyncio
import json
import threading
import time

import numpy as np
import pytest

from server.models.publish import publish
from server.models.registry import BUCKETS, ModelRegistry, canary_bucket
from server.models.repository import ModelRepository
from tests.support.model_kit import GOLDEN_X, expected_scores, load_tiny_scorer, weights_for
from vectoros.core.errors import InvalidInput, NotFound, Unavailable


class CountingLoader:
    """The real tiny-scorer loader, counting its calls (to see what was reloaded)."""

    def __init__(self):
        self.calls = []

    def __call__(self, path, manifest):
        self.calls.append(manifest.version)
        return load_tiny_scorer(path, manifest)


def scores_of(version_seed, x=GOLDEN_X):
    return expected_scores(x, weights_for(version_seed))


@pytest.fixture
def registry_for(models_root):
    def make(**kwargs):
        loader = kwargs.pop("loader", None) or CountingLoader()
        registry = ModelRegistry(models_root, {"scorer": loader}, **kwargs)
        registry.loader = loader
        return registry

    return make


def test_loads_production_and_serves_it(artifact, models_root, registry_for):
    publish(artifact(seed=1), models_root)
    registry = registry_for()
    with pytest.raises(Unavailable, match="not loaded yet"):
        registry.select("scorer", "deal-1")
    changed = registry.refresh()
    assert changed == ["scorer"]
    assert registry.refresh() == []  # nothing new: no reload, no notification
    assert registry.loader.calls == [1]

    loaded = registry.select("scorer", "deal-1")
    assert (loaded.name, loaded.version, loaded.label) == ("scorer", 1, "production")
    np.testing.assert_allclose(loaded.model.score(GOLDEN_X), scores_of(1), atol=1e-6)
    assert registry.resolve("scorer", 0, "deal-1") is loaded
    assert registry.resolve("scorer", 1) is loaded
    with pytest.raises(InvalidInput, match="model_version: must be >= 0"):
        registry.resolve("scorer", -1)
    with pytest.raises(NotFound, match=r"model_version: scorer version 7 is not loaded \(loaded: 1\)"):
        registry.get("scorer", 7)
    with pytest.raises(Unavailable, match="'embedder' is not serving"):
        registry.select("embedder")
    status = registry.status("scorer")
    assert (status.production, status.canary, status.loaded_versions, status.last_error) == (1, None, (1,), None)


def test_swap_keeps_previous_production_and_drops_the_rest(artifact, models_root, registry_for):
    registry = registry_for()
    repo = ModelRepository(models_root)
    for seed in (1, 2, 3):
        publish(artifact(seed=seed), models_root, force=True)
        registry.refresh()
    assert registry.status("scorer").loaded_versions == (2, 3)
    assert registry.get("scorer", 2).label == ""
    with pytest.raises(NotFound, match="model_version"):
        registry.get("scorer", 1)

    # Rollback to the kept previous version is a swap, not a load.
    repo.rollback("scorer")
    assert registry.refresh() == ["scorer"]
    assert registry.loader.calls == [1, 2, 3]
    assert registry.select("scorer").version == 2
    assert registry.status("scorer").loaded_versions == (2, 3)
    np.testing.assert_allclose(registry.select("scorer").model.score(GOLDEN_X), scores_of(2), atol=1e-6)

    # Rollback further loads version 1 again.
    repo.rollback("scorer")
    registry.refresh()
    assert registry.select("scorer").version == 1
    assert registry.loader.calls == [1, 2, 3, 1]
    assert registry.status("scorer").loaded_versions == (1, 2)


def test_tampered_version_rejected_old_keeps_serving(artifact, models_root, registry_for):
    publish(artifact(seed=1), models_root)
    registry = registry_for()
    notified = []
    registry.add_listener(notified.append)
    registry.refresh()
    publish(artifact(seed=2), models_root)
    model_file = models_root / "scorer" / "2" / "model.onnx"
    original = model_file.read_bytes()
    model_file.write_bytes(original[:-4] + b"\x00\x00\x80\x3f")

    assert registry.refresh() == ["scorer"]
    status = registry.status("scorer")
    assert status.production == 1
    assert "version 2 rejected: files.model.onnx: SHA-256 does not match" in status.last_error
    assert registry.select("scorer", "deal-9").version == 1
    assert notified == ["scorer", "scorer"]
    # Remembered: no reload attempt and no new notification on the next poll.
    assert registry.refresh() == []
    assert registry.loader.calls == [1]

    # Restoring the file (new mtime) makes the registry try again, and succeed.
    model_file.write_bytes(original)
    assert registry.refresh() == ["scorer"]
    assert registry.status("scorer").production == 2
    assert registry.status("scorer").last_error is None


def test_broken_manifest_and_failing_loader_are_rejected(artifact, models_root, registry_for):
    publish(artifact(seed=1), models_root)
    registry = registry_for()
    registry.refresh()
    publish(artifact(seed=2), models_root)
    manifest_file = models_root / "scorer" / "2" / "manifest.json"
    data = json.loads(manifest_file.read_text())
    data["owner"] = "someone"
    manifest_file.write_text(json.dumps(data))
    registry.refresh()
    assert "version 2 rejected: " in registry.status("scorer").last_error
    assert "owner: unknown key" in registry.status("scorer").last_error
    assert registry.select("scorer").version == 1

    def refusing_loader(path, manifest):
        raise ValueError("spec.features: unexpected")

    # A restart with production broken serves the newest older version that loads,
    # and says so.
    restarted = registry_for()
    restarted.refresh()
    assert restarted.select("scorer").version == 1
    assert restarted.status("scorer").production == 1
    assert "version 2 rejected: " in restarted.status("scorer").last_error
    assert "serving version 1 until production version 2 loads" in restarted.status("scorer").last_error

    fresh = ModelRegistry(models_root, {"scorer": refusing_loader})
    fresh.refresh()
    with pytest.raises(Unavailable, match="version 2 rejected: .*owner: unknown key"):
        fresh.select("scorer")  # no version loads at all: nothing serves
    ModelRepository(models_root).rollback("scorer", to=1)
    fresh.refresh()
    assert "version 1 rejected: ValueError: spec.features: unexpected" in fresh.status("scorer").last_error

    no_loader = ModelRegistry(models_root, {})
    no_loader.refresh()
    assert "kind: no loader for 'scorer'" in no_loader.status("scorer").last_error


def test_canary_routing_is_stable_and_proportional(artifact, models_root, registry_for):
    publish(artifact(seed=1), models_root)
    publish(artifact(seed=2), models_root, canary_percent=10)
    registry = registry_for()
    registry.refresh()
    status = registry.status("scorer")
    assert (status.production, status.canary, status.canary_percent) == (1, 2, 10.0)

    keys = [f"deal-{i}" for i in range(20_000)]
    first = [registry.select("scorer", key).version for key in keys]
    assert first == [registry.select("scorer", key).version for key in keys]  # stable per key
    share = first.count(2) / len(keys)
    assert abs(share - 0.10) < 0.01
    assert all(v == 2 for key, v in zip(keys, first, strict=True) if canary_bucket(key) < BUCKETS // 10)
    assert registry.select("scorer", None).version == 1  # no key: production
    assert registry.select("scorer", "").version == 1

    # Raising the share keeps every deal already on the canary there.
    ModelRepository(models_root).set_canary("scorer", 2, 30)
    registry.refresh()
    second = [registry.select("scorer", key).version for key in keys]
    assert all(after == 2 for before, after in zip(first, second, strict=True) if before == 2)
    assert abs(second.count(2) / len(keys) - 0.30) < 0.015

    # Promotion: the canary becomes production with no reload.
    ModelRepository(models_root).promote("scorer")
    registry.refresh()
    assert {registry.select("scorer", key).version for key in keys[:500]} == {2}
    assert registry.loader.calls == [1, 2]


def test_hot_swap_under_concurrent_requests(artifact, models_root, registry_for):
    sources = {seed: artifact(seed=seed) for seed in (1, 2, 3)}
    publish(sources[1], models_root)
    registry = registry_for()
    registry.refresh()
    repo = ModelRepository(models_root)
    stop = threading.Event()
    results, errors = [], []
    x = GOLDEN_X[:1]

    def client(worker):
        i = 0
        while not stop.is_set():
            try:
                loaded = registry.select("scorer", f"deal-{worker}-{i % 50}")
                results.append((loaded.version, float(loaded.model.score(x)[0, 0])))
            except Exception as exc:  # any error fails the test below
                errors.append(exc)
            i += 1

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        steps = [
            lambda: publish(sources[2], models_root, force=True),
            lambda: publish(sources[3], models_root, force=True, canary_percent=50),
            lambda: repo.promote("scorer"),
            lambda: repo.rollback("scorer", to=2),
            lambda: repo.rollback("scorer", to=1),
        ]
        for step in steps:
            time.sleep(0.05)
            step()
            registry.refresh()
        time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert errors == []
    assert len(results) > 200
    expected = {seed: float(scores_of(seed, x)[0, 0]) for seed in (1, 2, 3)}
    # Every answer names a version that existed and was computed by that version.
    for version, score in results:
        assert version in expected
        assert score == pytest.approx(expected[version], abs=1e-6)
    assert {version for version, _ in results} == {1, 2, 3}
    assert registry.select("scorer").version == 1


def test_request_keeps_its_version_across_swaps(artifact, models_root, registry_for):
    publish(artifact(seed=1), models_root)
    registry = registry_for()
    registry.refresh()
    held = registry.select("scorer", "deal-1")
    for seed in (2, 3):
        publish(artifact(seed=seed), models_root, force=True)
        registry.refresh()
    assert 1 not in registry.status("scorer").loaded_versions  # dropped by the registry...
    assert held.version == 1  # ...yet the request that holds it still runs version 1
    np.testing.assert_allclose(held.model.score(GOLDEN_X), scores_of(1), atol=1e-6)
    assert registry.select("scorer", "deal-1").version == 3


def test_names_restrict_the_registry(artifact, models_root, registry_for):
    publish(artifact(seed=1), models_root)
    registry = registry_for(names=["scorer", "embedder"])
    registry.refresh()
    assert registry.names() == ["embedder", "scorer"]
    assert registry.status("embedder").last_error == "no version in the repository"
    assert registry.status("scorer").production == 1
    assert registry.status("other").last_error == "not loaded yet"


async def test_run_polls_and_notifies_on_the_loop(artifact, models_root, registry_for):
    publish(artifact(seed=1), models_root)
    registry = registry_for()
    loop = asyncio.get_running_loop()
    seen = asyncio.Queue()

    def listener(name):
        assert asyncio.get_running_loop() is loop  # called on the loop's thread
        seen.put_nowait((name, registry.status(name).production))

    registry.add_listener(listener)
    stop = asyncio.Event()
    task = asyncio.create_task(registry.run(0.02, stop))
    assert await asyncio.wait_for(seen.get(), 10) == ("scorer", 1)
    await asyncio.to_thread(publish, artifact(seed=2), models_root)
    assert await asyncio.wait_for(seen.get(), 10) == ("scorer", 2)
    stop.set()
    await asyncio.wait_for(task, 5)
