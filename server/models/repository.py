"""The model repository on disk: `<root>/<name>/<integer version>/` and labels.

Only folders whose name is a positive integer (no sign, no leading zero) are
versions; anything else (`.tmp-*` while publishing, stray files) is ignored.
`labels.json` points `production` and an optional `canary` (with a traffic
percentage) at versions and is always replaced atomically. Label changes take
the model's lock, the same one publishing takes, so a rollback and a publish
never interleave their read-modify-write of `labels.json`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vectoros.core.errors import FailedPrecondition, NotFound
from vectoros.core.manifest import MANIFEST_FILE, NAME_PATTERN, Manifest, ManifestError

LABELS_FILE = "labels.json"
LOCK_FILE = ".publish.lock"
NEXT_VERSION_FILE = ".next_version"


class RepositoryError(FailedPrecondition):
    """The repository's state forbids the operation (a broken labels.json, a
    rollback with nowhere to go, ...)."""


@dataclass(frozen=True)
class Labels:
    """Which versions serve. `canary_percent` is in [0, 100]; 0 when no canary."""

    production: int | None
    canary: int | None = None
    canary_percent: float = 0.0


def is_version_name(name: str) -> bool:
    return name.isascii() and name.isdigit() and name[0] != "0"


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader sees the old or the new file, whole."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModelRepository:
    """A model repository rooted at `root`. Cheap to create; reads the disk on each call."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelRepository({str(self.root)!r})"

    # --- reading --------------------------------------------------------------

    def names(self) -> list[str]:
        """Model names: folders of the root with a valid model name, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and NAME_PATTERN.match(entry.name)
        )

    def model_dir(self, name: str) -> Path:
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise NotFound(f"name: {name!r} is not a valid model name")
        return self.root / name

    def version_dir(self, name: str, version: int) -> Path:
        return self.model_dir(name) / str(version)

    def versions(self, name: str) -> list[int]:
        """The integer version folders of a model, ascending. Unvalidated: a folder
        with a broken manifest is listed too."""
        folder = self.model_dir(name)
        if not folder.is_dir():
            return []
        return sorted(
            int(entry.name)
            for entry in folder.iterdir()
            if entry.is_dir() and is_version_name(entry.name)
        )

    def manifest(self, name: str, version: int) -> Manifest:
        """The strict manifest of one version; it must name this model and version."""
        folder = self.version_dir(name, version)
        if not folder.is_dir():
            raise NotFound(f"model_version: {name} has no version {version}")
        manifest = Manifest.load(folder / MANIFEST_FILE)
        if manifest.name != name:
            raise ManifestError(f"{folder / MANIFEST_FILE}: name: is {manifest.name!r}, the folder says {name!r}")
        if manifest.version != version:
            raise ManifestError(
                f"{folder / MANIFEST_FILE}: version: is {manifest.version}, the folder says {version}"
            )
        return manifest

    def valid_versions(self, name: str) -> list[int]:
        """Versions whose manifest loads (checksums are not verified here)."""
        valid = []
        for version in self.versions(name):
            try:
                self.manifest(name, version)
            except (ManifestError, NotFound):
                continue
            valid.append(version)
        return valid

    def labels(self, name: str) -> Labels:
        """The model's labels. Without `labels.json`, production is the highest version
        whose manifest loads (so a hand-copied first model serves) and no canary.
        A malformed `labels.json` raises `RepositoryError`."""
        path = self.model_dir(name) / LABELS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            valid = self.valid_versions(name)
            return Labels(production=valid[-1] if valid else None)
        return _parse_labels(text, path)

    # --- writing --------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, *, create: bool = False) -> Iterator[None]:
        """Hold the model's exclusive lock (`<name>/.publish.lock`, fcntl) while
        publishing or changing labels. Blocks until it is free. The model's folder
        must exist unless `create` (publishing a new model)."""
        folder = self.model_dir(name)
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        elif not folder.is_dir():
            raise NotFound(f"name: no model {name!r} in {self.root}")
        with (folder / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def write_labels(self, name: str, labels: Labels) -> None:
        """Replace `labels.json` atomically. The caller holds `lock(name)`."""
        data: dict[str, object] = {"production": labels.production}
        if labels.canary is not None:
            data["canary"] = {"version": labels.canary, "percent": labels.canary_percent}
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        _parse_labels(text, LABELS_FILE)  # never write what we could not read back
        write_atomic(self.model_dir(name) / LABELS_FILE, text)

    def _require_version(self, name: str, version: int, field: str) -> None:
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise NotFound(f"{field}: {version!r} is not a version number")
        if version not in self.versions(name):
            have = ", ".join(map(str, self.versions(name))) or "none"
            raise NotFound(f"{field}: {name} has no version {version} (versions: {have})")
        self.manifest(name, version)  # refuse a version whose manifest is broken

    def set_production(self, name: str, version: int) -> Labels:
        """Point production at `version` (which must exist with a valid manifest). A
        canary on the same version is cleared. Returns the new labels."""
        with self.lock(name):
            return self._set_production_locked(name, version)

    def _set_production_locked(self, name: str, version: int) -> Labels:
        self._require_version(name, version, "version")
        current = self.labels(name)
        canary = None if current.canary == version else current.canary
        labels = Labels(version, canary, current.canary_percent if canary is not None else 0.0)
        self.write_labels(name, labels)
        return labels

    def set_canary(self, name: str, version: int, percent: float) -> Labels:
        """Send `percent` (0-100] of routed traffic to `version`, which must exist and
        differ from production."""
        if not valid_percent(percent) or percent == 0:
            raise RepositoryError(f"percent: must be a number in (0, 100], got {percent!r}")
        with self.lock(name):
            return self._set_canary_locked(name, version, float(percent))

    def _set_canary_locked(self, name: str, version: int, percent: float) -> Labels:
        self._require_version(name, version, "version")
        current = self.labels(name)
        if current.production is None:
            raise RepositoryError(f"{name}: no production version; a canary needs one")
        if current.production == version:
            raise RepositoryError(f"version: {version} is already production")
        labels = Labels(current.production, version, percent)
        self.write_labels(name, labels)
        return labels

    def clear_canary(self, name: str) -> Labels:
        with self.lock(name):
            current = self.labels(name)
            if current.canary is None:
                return current
            labels = Labels(current.production)
            self.write_labels(name, labels)
            return labels

    def promote(self, name: str) -> Labels:
        """Make the canary production and clear the canary."""
        with self.lock(name):
            current = self.labels(name)
            if current.canary is None:
                raise RepositoryError(f"{name}: no canary to promote")
            return self._set_production_locked(name, current.canary)

    def rollback(self, name: str, to: int | None = None) -> Labels:
        """Point production at `to`, or by default at the highest valid version below
        the current production. Refuses unknown versions and a rollback with no
        earlier version. The canary label is kept unless it is the target."""
        with self.lock(name):
            current = self.labels(name)
            if to is None:
                if current.production is None:
                    raise RepositoryError(f"{name}: no production version to roll back from")
                earlier = [v for v in self.valid_versions(name) if v < current.production]
                if not earlier:
                    raise RepositoryError(
                        f"{name}: no valid version below production {current.production}"
                    )
                to = earlier[-1]
            return self._set_production_locked(name, to)


def valid_percent(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 100
    )


def _parse_labels(text: str, path: object) -> Labels:
    def fail(rule: str) -> RepositoryError:
        return RepositoryError(f"{path}: {rule}")

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise fail(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise fail("must be an object")
    for key in data:
        if key not in ("production", "canary"):
            raise fail(f"{key}: unknown key")
    if "production" not in data:
        raise fail("production: missing key")
    production = data["production"]
    if not isinstance(production, int) or isinstance(production, bool) or production < 1:
        raise fail("production: must be a positive integer")
    canary = data.get("canary")
    if canary is None:
        return Labels(production)
    if not isinstance(canary, dict) or set(canary) != {"version", "percent"}:
        raise fail('canary: must be {"version": int, "percent": number}')
    version = canary["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise fail("canary.version: must be a positive integer")
    if not valid_percent(canary["percent"]):
        raise fail("canary.percent: must be a number in [0, 100]")
    return Labels(production, version, float(canary["percent"]))
