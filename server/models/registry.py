"""The server's view of the model repository: which versions are loaded and serve.

`ModelRegistry.refresh()` reads the labels of each model, fully loads any newly
labelled version (strict manifest, checksums, golden run, then the kind's
loader) and only then swaps one reference: the model's immutable snapshot. A
request reads that reference once (`select`, `get` or `resolve`) and keeps the
`LoadedModel` it got for its whole life, so a swap never changes a version in
the middle of a request, and nothing is ever loaded inside a request.

A version that fails to load is rejected: the error is logged once, kept in
`status(name).last_error`, and the version that served before keeps serving.
The failure is remembered until the version's files change, so a broken
artifact is not reloaded on every poll.

Besides production and the canary, the previous production stays loaded so
that a rollback swaps instantly; any other version is dropped from the registry
(and freed once no request holds it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from server.models.repository import ModelRepository
from vectoros.core.errors import InvalidInput, NotFound, Unavailable, VectorOSError
from vectoros.core.manifest import Manifest, ManifestError, run_golden, verify_files

log = logging.getLogger(__name__)

Loader = Callable[[Path, Manifest], object]
Listener = Callable[[str], None]

# Canary routing hashes the routing key into this many buckets; a canary at
# `percent` takes the buckets below percent * BUCKETS / 100 (0.01 % steps).
BUCKETS = 10_000


def canary_bucket(routing_key: str) -> int:
    """The stable bucket (0..9,999) of a routing key: SHA-256, so it is the same in
    every process and every run (unlike Python's salted `hash`)."""
    digest = hashlib.sha256(routing_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


# eq=False: identity equality and hashing, so a LoadedModel can key a cache (its
# manifest holds dicts and could not be hashed by value anyway).
@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A loaded version. `model` is what the kind's loader built; `label` is
    "production", "canary", or "" for a version kept loaded without a label
    (the previous production). Hold on to it for the whole request."""

    name: str
    version: int
    manifest: Manifest = field(repr=False)
    model: object = field(repr=False)
    label: str


@dataclass(frozen=True)
class ModelStatus:
    """For health and metadata: what serves, what is loaded, and the last problem
    (None when the labelled versions all serve)."""

    production: int | None
    canary: int | None
    canary_percent: float
    loaded_versions: tuple[int, ...]
    last_error: str | None


@dataclass(frozen=True)
class _Snapshot:
    production: LoadedModel | None = None
    canary: LoadedModel | None = None
    canary_percent: float = 0.0
    loaded: Mapping[int, LoadedModel] = field(default_factory=dict)
    last_error: str | None = None

    @property
    def canary_threshold(self) -> int:
        return round(self.canary_percent * BUCKETS / 100)

    def key(self) -> tuple:
        return (
            self.production.version if self.production else None,
            self.canary.version if self.canary else None,
            self.canary_percent,
            tuple(sorted(self.loaded)),
            self.last_error,
        )


_EMPTY = _Snapshot()


class ModelRegistry:
    """Loaded model versions by name, refreshed from a `ModelRepository`.

    `loaders` maps a manifest `kind` to a function `(version_dir, manifest) -> model`
    that builds the in-memory model (for example an onnxruntime session wrapper) or
    raises. `names` restricts the registry to those models (default: every model in
    the repository). `check_golden` runs each version's golden inputs once at load.

    Thread-safe: `refresh` may run in a worker thread while requests call `select`,
    `get`, `resolve` and `status` from anywhere.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        loaders: Mapping[str, Loader],
        *,
        names: Iterable[str] | None = None,
        check_golden: bool = True,
    ) -> None:
        self.repository = ModelRepository(root)
        self._loaders = dict(loaders)
        self._names = tuple(names) if names is not None else None
        self._check_golden = check_golden
        # Replaced whole (never mutated) under _refresh_lock; readers take one reference.
        self._snapshots: Mapping[str, _Snapshot] = {}
        self._refresh_lock = threading.Lock()
        self._listeners: list[Listener] = []
        # (name, version) -> (fingerprint of its files, error) for rejected versions.
        self._failures: dict[tuple[str, int], tuple[object, str]] = {}
        # name -> versions kept loaded beside the labelled ones (`retain`).
        self._retained: dict[str, frozenset[int]] = {}

    # --- reading (request path) ------------------------------------------------

    def names(self) -> list[str]:
        """Models the registry knows (loaded or not)."""
        return sorted(self._snapshots)

    def _serving(self, name: str) -> _Snapshot:
        snapshot = self._snapshots.get(name)
        if snapshot is None or snapshot.production is None:
            reason = snapshot.last_error if snapshot is not None and snapshot.last_error else "not loaded yet"
            raise Unavailable(f"model {name!r} is not serving: {reason}")
        return snapshot

    def select(self, name: str, routing_key: str | None = None) -> LoadedModel:
        """The version to serve: the canary when the routing key (a deal id) hashes
        into the canary's share, else production. Without a key: production.
        Raises `Unavailable` when no version of `name` is loaded."""
        snapshot = self._serving(name)
        if snapshot.canary is not None and routing_key:
            if canary_bucket(routing_key) < snapshot.canary_threshold:
                return snapshot.canary
        assert snapshot.production is not None
        return snapshot.production

    def get(self, name: str, version: int) -> LoadedModel:
        """A pinned, loaded version. Raises `NotFound` on field `model_version` when
        that version is not loaded (only labelled versions and the previous
        production are), `Unavailable` when nothing of `name` is."""
        snapshot = self._serving(name)
        loaded = snapshot.loaded.get(version)
        if loaded is None:
            have = ", ".join(map(str, sorted(snapshot.loaded)))
            raise NotFound(f"model_version: {name} version {version} is not loaded (loaded: {have})")
        return loaded

    def resolve(self, name: str, model_version: int = 0, routing_key: str | None = None) -> LoadedModel:
        """What a request's `model_version` field asks for: 0 selects (production or
        canary by routing key), a positive number pins that version."""
        if model_version < 0:
            raise InvalidInput("model_version", "must be >= 0 (0 serves production)")
        if model_version == 0:
            return self.select(name, routing_key)
        return self.get(name, model_version)

    def status(self, name: str) -> ModelStatus:
        snapshot = self._snapshots.get(name, _EMPTY)
        error = snapshot.last_error
        if name not in self._snapshots:
            error = "not loaded yet"
        return ModelStatus(
            production=snapshot.production.version if snapshot.production else None,
            canary=snapshot.canary.version if snapshot.canary else None,
            canary_percent=snapshot.canary_percent if snapshot.canary else 0.0,
            loaded_versions=tuple(sorted(snapshot.loaded)),
            last_error=error,
        )

    # --- refreshing -------------------------------------------------------------

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(name)` after each change of a model's state: a swap, a
        label change, a rejected version or a cleared error. `refresh()` calls it in
        the calling thread; `run()` calls it on the event loop's thread."""
        self._listeners.append(callback)

    def retain(self, name: str, versions: Iterable[int]) -> None:
        """Keep `versions` of `name` loaded (unlabelled) beside production and the
        canary, from the next `refresh()` on, until retained no more. For a user of
        an older version that must keep working: the similarity store searches
        with the embedder its newest complete collection was built with until a
        reindex for the production embedder completes."""
        with self._refresh_lock:
            self._retained = {**self._retained, name: frozenset(versions)}

    def refresh(self, *, notify: bool = True) -> list[str]:
        """Bring the loaded versions in line with the repository's labels. Blocking
        (it loads models): call it at startup, then let `run` call it in a worker
        thread. Returns the names whose state changed."""
        changed = []
        with self._refresh_lock:
            if self._names is not None:
                names = list(self._names)
            else:
                names = sorted(set(self.repository.names()) | set(self._snapshots))
            for name in names:
                old = self._snapshots.get(name)
                new = self._refresh_one(name, old or _EMPTY)
                if old is None or new.key() != old.key():
                    self._snapshots = {**self._snapshots, name: new}
                    changed.append(name)
                    if new.last_error and (old is None or new.last_error != old.last_error):
                        log.error("model %s: %s; serving %s", name, new.last_error,
                                  f"version {new.production.version}" if new.production else "nothing")
                    elif old is not None and old.production is not None and new.production is not None \
                            and old.production.version != new.production.version:
                        log.info("model %s: production version %d -> %d",
                                 name, old.production.version, new.production.version)
        if notify:
            self._notify(changed)
        return changed

    def _notify(self, names: Iterable[str]) -> None:
        for name in names:
            for callback in list(self._listeners):
                try:
                    callback(name)
                except Exception:
                    log.exception("model registry listener failed for %s", name)

    async def run(self, poll_interval: float, stop: asyncio.Event) -> None:
        """Poll the repository every `poll_interval` seconds until `stop` is set.
        Loading happens in a worker thread; listeners run on this event loop."""
        while not stop.is_set():
            try:
                changed = await asyncio.to_thread(self.refresh, notify=False)
            except Exception:  # keep watching: the next poll may succeed
                log.exception("model registry refresh failed")
            else:
                self._notify(changed)
            try:
                await asyncio.wait_for(stop.wait(), timeout=poll_interval)
            except TimeoutError:
                pass

    def _refresh_one(self, name: str, old: _Snapshot) -> _Snapshot:
        errors: list[str] = []
        try:
            labels = self.repository.labels(name)
        except VectorOSError as exc:
            return replace(old, last_error=f"labels unreadable: {exc.message}")
        if labels.production is None:
            return replace(old, last_error="no version in the repository")

        production = self._obtain(name, labels.production, old, errors) or old.production
        if production is None:
            production = self._fallback(name, labels.production, old, errors)
        if production is None:
            return _Snapshot(last_error="; ".join(errors))

        canary = None
        if labels.canary is not None and labels.canary != production.version and labels.canary_percent > 0:
            canary = self._obtain(name, labels.canary, old, errors)

        previous = old.production
        if previous is None or previous.version == production.version:
            # Production did not move: keep whichever unlabelled version was kept.
            previous = next((m for m in old.loaded.values() if m.label == ""), None)
        production = _labelled(production, "production")
        loaded = {production.version: production}
        if canary is not None:
            canary = _labelled(canary, "canary")
            loaded[canary.version] = canary
        if previous is not None and previous.version not in loaded:
            loaded[previous.version] = _labelled(previous, "")
        for version in sorted(self._retained.get(name, ())):
            if version not in loaded:
                kept = self._obtain(name, version, old, errors)
                if kept is not None:
                    loaded[version] = _labelled(kept, "")
        return _Snapshot(
            production=production,
            canary=canary,
            canary_percent=labels.canary_percent if canary is not None else 0.0,
            loaded=loaded,
            last_error="; ".join(errors) or None,
        )

    def _fallback(self, name: str, broken: int, old: _Snapshot, errors: list[str]) -> LoadedModel | None:
        """With nothing loaded yet (a restart) and production rejected: the newest
        older version that loads, so the model keeps serving what it most likely
        served before the restart rather than nothing. The note stays in
        `last_error` until production loads."""
        for version in sorted(self.repository.versions(name), reverse=True):
            if version < broken:
                loaded = self._obtain(name, version, old, [])
                if loaded is not None:
                    errors.append(f"serving version {version} until production version {broken} loads")
                    return loaded
        return None

    def _obtain(self, name: str, version: int, old: _Snapshot, errors: list[str]) -> LoadedModel | None:
        """The loaded version, loading it if needed; None (and an error) if it fails."""
        if version in old.loaded:
            return old.loaded[version]
        fingerprint = self._fingerprint(name, version)
        failure = self._failures.get((name, version))
        if failure is not None and failure[0] == fingerprint:
            errors.append(failure[1])
            return None
        try:
            loaded = self._load(name, version)
        except Exception as exc:
            message = exc.message if isinstance(exc, VectorOSError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, VectorOSError):
                log.exception("model %s version %d: loader failed", name, version)
            error = f"version {version} rejected: {message}"
            self._failures[(name, version)] = (fingerprint, error)
            errors.append(error)
            return None
        self._failures.pop((name, version), None)
        return loaded

    def _load(self, name: str, version: int) -> LoadedModel:
        path = self.repository.version_dir(name, version)
        manifest = self.repository.manifest(name, version)
        verify_files(path, manifest)
        loader = self._loaders.get(manifest.kind)
        if loader is None:
            raise ManifestError(f"kind: no loader for {manifest.kind!r} in this server")
        if self._check_golden:
            run_golden(path, manifest)
        model = loader(path, manifest)
        log.info("model %s: loaded version %d", name, version)
        return LoadedModel(name, version, manifest, model, label="")

    def _fingerprint(self, name: str, version: int) -> object:
        """Sizes and modification times of a version's files: a rejected version is
        retried only when this changes."""
        root = self.repository.version_dir(name, version)
        entries = []
        for dirpath, _dirnames, filenames in os.walk(root):
            for filename in filenames:
                path = Path(dirpath) / filename
                try:
                    stat = path.stat()
                except OSError:
                    continue
                entries.append((path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns))
        return tuple(sorted(entries))


def _labelled(model: LoadedModel, label: str) -> LoadedModel:
    return model if model.label == label else replace(model, label=label)
