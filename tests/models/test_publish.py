import json
import os
import shutil
import threading

import pytest

import server.models.publish as publish_module
from server.models.publish import PublishRefused, publish
from server.models.repository import Labels, ModelRepository
from vectoros.core.manifest import Manifest, ManifestError


def test_first_publish_becomes_production(artifact, models_root):
    result = publish(artifact(seed=1), models_root)
    assert (result.name, result.version, result.label, result.previous_production) == ("scorer", 1, "production", None)
    repo = ModelRepository(models_root)
    assert repo.labels("scorer") == Labels(1)
    published = repo.manifest("scorer", 1)
    assert published.version == 1
    # The artifact's own manifest is untouched: version stays null there.
    assert Manifest.load(artifact(seed=1)).version is None
    # Only the version, the labels and the bookkeeping files: no tmp left.
    assert sorted(p.name for p in (models_root / "scorer").iterdir()) == [
        ".next_version", ".publish.lock", "1", "labels.json"
    ]


def test_tampered_artifact_is_refused(artifact, models_root):
    publish(artifact(seed=1), models_root)
    source = artifact(seed=2, metrics={"roc_auc": 0.9})
    with (source / "model.onnx").open("r+b") as handle:
        handle.seek(-4, os.SEEK_END)  # the tail of the weights
        handle.write(b"\x00\x00\x80\x3f")
    with pytest.raises(ManifestError, match="files.model.onnx: SHA-256 does not match"):
        publish(source, models_root)
    repo = ModelRepository(models_root)
    assert repo.versions("scorer") == [1]
    assert repo.labels("scorer") == Labels(1)


def test_golden_mismatch_refused_at_publish(artifact, models_root):
    source = artifact(seed=1)
    data = json.loads((source / "manifest.json").read_text())
    data["golden"]["model.onnx"]["outputs"]["y"][0][0] += 0.01
    (source / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"golden.model.onnx.outputs.y: differs .* by 0.01"):
        publish(source, models_root)
    assert ModelRepository(models_root).versions("scorer") == []


def test_worse_model_refused_unless_forced(artifact, models_root):
    publish(artifact(seed=1, metrics={"roc_auc": 0.80, "brier": 0.20}), models_root)
    worse = artifact(seed=2, metrics={"roc_auc": 0.75, "brier": 0.18})
    with pytest.raises(PublishRefused, match=r"metrics.roc_auc: 0.75 is worse than production version 1's 0.8"):
        publish(worse, models_root)
    repo = ModelRepository(models_root)
    assert repo.versions("scorer") == [1]

    result = publish(worse, models_root, force=True)
    assert result.version == 2 and result.previous_production == 1
    by_name = {delta.name: delta for delta in result.metric_comparison}
    assert by_name["roc_auc"].better is False and by_name["brier"].better is True
    assert repo.labels("scorer") == Labels(2)

    # Within the tolerance counts as not worse; missing the primary metric is refused.
    assert publish(artifact(seed=3, metrics={"roc_auc": 0.7495}), models_root).version == 3
    with pytest.raises(PublishRefused, match="metrics.roc_auc: missing"):
        publish(artifact(seed=4, metrics={"brier": 0.1}), models_root)


def test_other_kind_refused_even_forced(artifact, models_root):
    publish(artifact(name="scorer", kind="scorer"), models_root)
    other = artifact(name="scorer", kind="embedder", metrics={"cosine_mean": 0.99})
    with pytest.raises(PublishRefused, match="kind: 'embedder'"):
        publish(other, models_root, force=True)


def test_versions_only_go_up_even_after_deletion(artifact, models_root):
    for seed in (1, 2, 3):
        publish(artifact(seed=seed), models_root)
    repo = ModelRepository(models_root)
    repo.rollback("scorer", to=1)
    shutil.rmtree(models_root / "scorer" / "3")
    shutil.rmtree(models_root / "scorer" / "2")
    assert publish(artifact(seed=4), models_root).version == 4
    # Even with the high-water mark gone, the highest folder still counts.
    (models_root / "scorer" / ".next_version").unlink()
    assert publish(artifact(seed=5), models_root).version == 5
    assert repo.versions("scorer") == [1, 4, 5]


def test_publish_as_canary(artifact, models_root):
    first = publish(artifact(seed=1), models_root, canary_percent=10)
    assert first.label == "production"  # no production yet: a canary needs one
    second = publish(artifact(seed=2), models_root, canary_percent=10)
    assert second.label == "canary"
    assert ModelRepository(models_root).labels("scorer") == Labels(1, 2, 10.0)


def test_failed_rename_leaves_nothing_visible(artifact, models_root, monkeypatch):
    publish(artifact(seed=1), models_root)

    def failing_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publish_module.os, "rename", failing_rename)
    with pytest.raises(OSError, match="No space left"):
        publish(artifact(seed=2), models_root)
    monkeypatch.undo()
    entries = sorted(p.name for p in (models_root / "scorer").iterdir())
    assert entries == [".next_version", ".publish.lock", "1", "labels.json"]
    assert ModelRepository(models_root).labels("scorer") == Labels(1)


def test_failed_copy_leaves_nothing_and_stale_tmp_is_cleaned(artifact, models_root, monkeypatch):
    publish(artifact(seed=1), models_root)
    # A publisher that died mid-copy left this behind; the next publish removes it.
    leftover = models_root / "scorer" / ".tmp-deadbeef"
    (leftover / "half").mkdir(parents=True)

    real_copy = shutil.copyfile
    copied = []

    def copy_then_fail(src, dst, **kwargs):
        if copied:
            raise OSError(5, "Input/output error")
        copied.append(dst)
        return real_copy(src, dst, **kwargs)

    monkeypatch.setattr(publish_module.shutil, "copyfile", copy_then_fail)
    with pytest.raises(OSError, match="Input/output error"):
        publish(artifact(seed=2), models_root)
    monkeypatch.undo()
    assert copied, "the first file was copied before the failure"
    assert not leftover.exists()
    assert not [p for p in (models_root / "scorer").iterdir() if p.name.startswith(".tmp-")]
    assert ModelRepository(models_root).versions("scorer") == [1]


def test_concurrent_publishers_get_distinct_versions(artifact, models_root):
    sources = [artifact(seed=seed) for seed in range(1, 5)]
    results, errors = [], []

    def run(source):
        try:
            results.append(publish(source, models_root, force=True).version)
        except Exception as exc:  # recorded and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [1, 2, 3, 4]
    assert ModelRepository(models_root).versions("scorer") == [1, 2, 3, 4]


def test_publish_refuses_bad_arguments(artifact, models_root, tmp_path):
    with pytest.raises(Exception, match="artifact_dir"):
        publish(tmp_path / "absent", models_root)
    with pytest.raises(Exception, match="canary_percent"):
        publish(artifact(), models_root, canary_percent=0)
