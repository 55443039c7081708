"""Publishing an artifact into the model repository (`vectoros publish`).

An artifact (a training output: files plus a `manifest.json` whose `version` is
null) is checked before anything in the repository changes: strict manifest,
checksums, and its golden inputs run through onnxruntime. Its held-out metrics
are then compared with the current production version's; a worse primary
metric is refused unless forced. The files are copied into
`<name>/.tmp-<random>/`, checked again, and renamed to the next integer, so a
half-written version is never visible and a failed publish leaves nothing
behind. Finally the new version becomes production (or the canary).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from server.models.repository import (
    NEXT_VERSION_FILE,
    ModelRepository,
    RepositoryError,
    fsync_dir,
    valid_percent,
    write_atomic,
)
from vectoros.core.errors import FailedPrecondition, NotFound
from vectoros.core.manifest import Manifest, ManifestError, metric_direction, run_golden, verify_files

log = logging.getLogger(__name__)

# The metric that decides whether a new version may replace production, per kind.
PRIMARY_METRIC = {"scorer": "roc_auc", "embedder": "cosine_mean"}
# How much worse the primary metric may be before publishing is refused: retraining
# on the same data with another seed moves ROC AUC by about this much.
PRIMARY_TOLERANCE = 1e-3
TMP_PREFIX = ".tmp-"


class PublishRefused(FailedPrecondition):
    """The artifact is valid but may not replace production (worse metrics, other kind)."""


@dataclass(frozen=True)
class MetricDelta:
    """One metric of the candidate beside production's. `better` is None when the
    direction is unknown or a side lacks the metric."""

    name: str
    candidate: float | None
    production: float | None
    direction: Literal["higher", "lower"] | None
    better: bool | None


@dataclass(frozen=True)
class PublishResult:
    name: str
    version: int
    label: Literal["production", "canary"]
    previous_production: int | None
    metric_comparison: tuple[MetricDelta, ...]


def compare_metrics(candidate: Manifest, production: Manifest | None) -> tuple[MetricDelta, ...]:
    """Every metric either side has, sorted by name, with which side is better."""
    theirs = production.metrics if production is not None else {}
    deltas = []
    for name in sorted(set(candidate.metrics) | set(theirs)):
        ours, old = candidate.metrics.get(name), theirs.get(name)
        direction = metric_direction(name)
        better = None
        if ours is not None and old is not None and direction is not None and ours != old:
            better = (ours > old) == (direction == "higher")
        deltas.append(MetricDelta(name, ours, old, direction, better))
    return tuple(deltas)


def _check_primary(candidate: Manifest, production: Manifest, production_version: int) -> None:
    primary = PRIMARY_METRIC[candidate.kind]
    ours, old = candidate.metrics.get(primary), production.metrics.get(primary)
    if old is None:
        return  # production never recorded it: nothing to defend
    if ours is None:
        raise PublishRefused(
            f"metrics.{primary}: missing, production version {production_version} has {old:.6g}"
        )
    worse_by = (old - ours) if metric_direction(primary) == "higher" else (ours - old)
    if worse_by > PRIMARY_TOLERANCE:
        raise PublishRefused(
            f"metrics.{primary}: {ours:.6g} is worse than production version {production_version}'s "
            f"{old:.6g} by {worse_by:.3g} (tolerance {PRIMARY_TOLERANCE:g}); use --force to publish anyway"
        )


def publish(
    artifact_dir: str | os.PathLike[str],
    models_root: str | os.PathLike[str],
    *,
    force: bool = False,
    canary_percent: float | None = None,
) -> PublishResult:
    """Check the artifact, copy it in as the next version and label it.

    Raises `ManifestError` for a malformed or tampered artifact or one whose golden
    outputs differ, and `PublishRefused` for a worse primary metric (unless `force`)
    or a different kind than production. With `canary_percent` the version becomes
    the canary with that share of traffic, unless there is no production yet, in
    which case it becomes production.
    """
    if canary_percent is not None and (not valid_percent(canary_percent) or canary_percent == 0):
        raise RepositoryError(f"canary_percent: must be a number in (0, 100], got {canary_percent!r}")
    artifact = Path(artifact_dir)
    if not artifact.is_dir():
        raise NotFound(f"artifact_dir: {artifact} is not a folder")
    manifest = Manifest.load(artifact)
    verify_files(artifact, manifest)
    run_golden(artifact, manifest)

    repo = ModelRepository(models_root)
    repo.root.mkdir(parents=True, exist_ok=True)
    name = manifest.name
    model_dir = repo.model_dir(name)
    with repo.lock(name, create=True):
        _remove_stale_tmp(model_dir)
        labels = repo.labels(name)
        production = None
        if labels.production is not None:
            try:
                production = repo.manifest(name, labels.production)
            except (ManifestError, NotFound) as exc:
                if not force:
                    raise PublishRefused(
                        f"production version {labels.production} cannot be read to compare metrics "
                        f"({exc.message}); use --force to publish anyway"
                    ) from None
        if production is not None and production.kind != manifest.kind:
            raise PublishRefused(
                f"kind: {manifest.kind!r}, production version {labels.production} of {name} is "
                f"{production.kind!r}"
            )
        comparison = compare_metrics(manifest, production)
        if production is not None and not force:
            _check_primary(manifest, production, labels.production)

        version = _next_version(repo, name)
        _copy_in(artifact, manifest, model_dir, version)
        write_atomic(model_dir / NEXT_VERSION_FILE, f"{version + 1}\n")

        if canary_percent is not None and labels.production is not None:
            repo._set_canary_locked(name, version, float(canary_percent))
            label: Literal["production", "canary"] = "canary"
        else:
            repo._set_production_locked(name, version)
            label = "production"
    log.info("published %s version %d as %s", name, version, label)
    return PublishResult(name, version, label, labels.production, comparison)


def _next_version(repo: ModelRepository, name: str) -> int:
    """One above every version that exists or ever existed (the high-water mark in
    `.next_version` survives deleting a version folder)."""
    model_dir = repo.model_dir(name)
    candidate = max(repo.versions(name), default=0) + 1
    mark = model_dir / NEXT_VERSION_FILE
    if mark.exists():
        text = mark.read_text(encoding="utf-8").strip()
        if not (text.isascii() and text.isdigit()):
            raise RepositoryError(f"{mark}: must hold the next version number, holds {text!r}")
        candidate = max(candidate, int(text))
    while (model_dir / str(candidate)).exists():  # a stray file with an integer name
        candidate += 1
    return candidate


def _copy_in(artifact: Path, manifest: Manifest, model_dir: Path, version: int) -> None:
    tmp = model_dir / f"{TMP_PREFIX}{uuid.uuid4().hex}"
    try:
        tmp.mkdir()
        for relative in manifest.files:
            target = tmp / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(artifact / relative, target)
            _fsync_file(target)
        # What was copied is what was checked: the source may change under us.
        verify_files(tmp, manifest)
        manifest.with_version(version).write(tmp)
        _fsync_file(tmp / "manifest.json")
        for dirpath, _dirnames, _filenames in os.walk(tmp):
            fsync_dir(Path(dirpath))
        target = model_dir / str(version)
        if target.exists():
            raise RepositoryError(f"{target}: already exists; versions are never reused")
        os.rename(tmp, target)
        fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_tmp(model_dir: Path) -> None:
    """Under the publish lock no other publisher runs, so any `.tmp-*` is a leftover
    of a publisher that died mid-copy."""
    for entry in model_dir.iterdir():
        if entry.name.startswith(TMP_PREFIX) and entry.is_dir():
            log.warning("removing %s, left by an interrupted publish", entry)
            shutil.rmtree(entry, ignore_errors=True)
