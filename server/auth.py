"""Bearer tokens bound to workspaces and a role: the tokens file and who a caller is.

A token reads ``vos_<id>_<secret>``: `id` (12 characters) names it in listings
and logs, `secret` is 32 random bytes. The tokens file stores, per token, only
the SHA-256 of the whole token (the secret is shown once, by `vectoros tokens
create`), its role, its workspaces, a name, when it was created and, once
revoked, when. A plain SHA-256 suffices: the secrets are random, not
passwords, so there is nothing to guess from the hash.

Roles: `reader` calls every read and Embed, Score, Forecast and insights;
`writer` also upserts and deletes deals and records feedback and outcomes;
`admin` does all of it in every workspace. A reader or writer holds the
workspaces listed for it and no other.

The file is JSON, written by replacing it (temporary file, fsync, rename) with
mode 0600, and read strictly: an unknown key, a bad role or a duplicate id
fails loudly. `TokenAuthority` re-reads it when it changes (checked at most
once per `reload_seconds`), so a new or revoked token takes effect without a
restart; a file that stops parsing keeps the last good set in force and logs
the error. No gRPC here: the interceptor asks `authenticate()`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from vectoros.core.deals import check_id
from vectoros.core.errors import InvalidInput, PermissionDenied, Unauthenticated

log = logging.getLogger("vectoros.auth")

FORMAT = 1
PREFIX = "vos_"
ID_LENGTH = 12
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_TOKEN_KEYS = ("id", "name", "role", "workspaces", "sha256", "created_at", "revoked_at")
UNAUTHENTICATED_MESSAGE = "missing or invalid bearer token (send 'authorization: Bearer <token>')"


class Role(StrEnum):
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"


# What each role may do beyond the one below it.
_RANK = {Role.READER: 0, Role.WRITER: 1, Role.ADMIN: 2}


class TokenFileError(ValueError):
    """The tokens file breaks its format; the message names the key."""


@dataclass(frozen=True)
class Token:
    """One token as the file stores it (never the secret)."""

    id: str
    name: str
    role: Role
    workspaces: frozenset[str]
    sha256: str
    created_at: str
    revoked_at: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id, "name": self.name, "role": self.role.value, "workspaces": sorted(self.workspaces),
            "sha256": self.sha256, "created_at": self.created_at, "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True)
class Principal:
    """The caller a valid token stands for."""

    token_id: str
    name: str
    role: Role
    workspaces: frozenset[str]

    def require_role(self, role: Role, method: str) -> None:
        if _RANK[self.role] < _RANK[role]:
            raise PermissionDenied("authorization", f"a {self.role.value} token may not call {method} (needs {role})")

    def holds(self, workspace_id: str) -> bool:
        return self.role is Role.ADMIN or workspace_id in self.workspaces

    def require_workspace(self, field: str, workspace_id: str) -> None:
        if not self.holds(workspace_id):
            # The workspace is the caller's own input; naming it leaks nothing.
            raise PermissionDenied(field, f"this token does not hold workspace {workspace_id!r}")


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _token_from_json(data: object, index: int) -> Token:
    where = f"tokens[{index}]"
    if not isinstance(data, dict):
        raise TokenFileError(f"{where}: must be an object")
    unknown = sorted(set(data) - set(_TOKEN_KEYS))
    missing = sorted(set(_TOKEN_KEYS) - set(data))
    if unknown or missing:
        raise TokenFileError(f"{where}: unknown keys {unknown}, missing keys {missing}")
    try:
        role = Role(data["role"])
    except ValueError:
        raise TokenFileError(f"{where}.role: must be reader, writer or admin, got {data['role']!r}") from None
    workspaces = data["workspaces"]
    if not isinstance(workspaces, list) or not all(isinstance(w, str) and w for w in workspaces):
        raise TokenFileError(f"{where}.workspaces: must be a list of workspace ids")
    if role is not Role.ADMIN and not workspaces:
        raise TokenFileError(f"{where}.workspaces: a {role.value} token needs at least one workspace")
    digest = data["sha256"]
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise TokenFileError(f"{where}.sha256: must be 64 lowercase hex digits")
    for key in ("id", "name", "created_at"):
        if not isinstance(data[key], str):
            raise TokenFileError(f"{where}.{key}: must be a string")
    if data["revoked_at"] is not None and not isinstance(data["revoked_at"], str):
        raise TokenFileError(f"{where}.revoked_at: must be null or a time")
    return Token(data["id"], data["name"], role, frozenset(workspaces), digest, data["created_at"], data["revoked_at"])


def read_tokens(path: Path) -> list[Token]:
    """Every token of the file, revoked ones included. Raises TokenFileError."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenFileError(f"{path}: no such file (create one with `vectoros tokens create`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenFileError(f"{path}: cannot read ({exc})") from None
    if not isinstance(document, dict) or set(document) != {"format", "tokens"}:
        raise TokenFileError(f"{path}: must be an object with exactly 'format' and 'tokens'")
    if document["format"] != FORMAT:
        raise TokenFileError(f"{path}: format must be {FORMAT}, got {document['format']!r}")
    if not isinstance(document["tokens"], list):
        raise TokenFileError(f"{path}: tokens must be a list")
    tokens = [_token_from_json(item, i) for i, item in enumerate(document["tokens"])]
    seen: set[str] = set()
    for token in tokens:
        if token.id in seen:
            raise TokenFileError(f"{path}: token id {token.id!r} appears twice")
        seen.add(token.id)
    return tokens


def write_tokens(path: Path, tokens: Iterable[Token]) -> None:
    """Replace the file atomically, readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": FORMAT, "tokens": [token.to_json() for token in tokens]}
    handle, temporary = tempfile.mkstemp(prefix=".tokens-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def create_token(path: Path, role: Role | str, workspaces: Iterable[str], name: str = "") -> tuple[str, Token]:
    """Add a new token to the file (created if missing); returns (the token, its entry).
    The token itself is returned once and stored nowhere."""
    role = Role(role)
    workspaces = frozenset(workspaces)
    for workspace in workspaces:
        check_id(workspace, "workspace")
    if role is not Role.ADMIN and not workspaces:
        raise InvalidInput("workspace", f"a {role.value} token needs at least one workspace")
    path = Path(path)
    existing = read_tokens(path) if path.exists() else []
    taken = {token.id for token in existing}
    token_id = _new_id(taken)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    entry = Token(
        id=token_id, name=name, role=role, workspaces=workspaces, sha256=token_sha256(token),
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    write_tokens(path, [*existing, entry])
    return token, entry


def revoke_token(path: Path, token_id: str) -> Token:
    """Mark a token revoked (kept in the file, so its id is never reused)."""
    tokens = read_tokens(path)
    for i, token in enumerate(tokens):
        if token.id == token_id:
            if token.revoked_at is None:
                now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
                tokens[i] = replace(token, revoked_at=now)
                write_tokens(path, tokens)
            return tokens[i]
    raise KeyError(token_id)


def _new_id(taken: set[str]) -> str:
    while True:
        candidate = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))
        if candidate not in taken:
            return candidate


class TokenAuthority:
    """Answers who a bearer token stands for, from a tokens file it keeps current."""

    def __init__(self, path: Path, reload_seconds: float = 1.0) -> None:
        self.path = Path(path)
        self.reload_seconds = reload_seconds
        self._lock = threading.Lock()
        self._by_id: dict[str, Token] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._load(force=True)

    def _file_stamp(self) -> tuple[int, int, int]:
        stat = os.stat(self.path)
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _load(self, force: bool = False) -> None:
        """Read the file if it changed. At start (`force`) a bad file is fatal;
        later it is logged and the last good set stays in force."""
        try:
            stamp = self._file_stamp()
            if not force and stamp == self._stamp:
                return
            tokens = read_tokens(self.path)
        except (OSError, TokenFileError) as exc:
            if force:
                raise TokenFileError(str(exc)) from None
            log.error("tokens file not reloaded; the previous tokens stay in force: %s", exc)
            return
        self._by_id = {token.id: token for token in tokens}
        self._stamp = stamp
        if not force:
            log.info("tokens file reloaded", extra={"tokens": sum(t.revoked_at is None for t in tokens)})

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.reload_seconds:
            return
        with self._lock:
            if now - self._checked < self.reload_seconds:
                return
            self._checked = now
            self._load()

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an `authorization` metadata value ``Bearer <token>``.
        Raises Unauthenticated for anything else, without repeating what was sent."""
        self._maybe_reload()
        if not authorization:
            raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token.startswith(PREFIX):
            raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
        token_id = token[len(PREFIX):len(PREFIX) + ID_LENGTH]
        entry = self._by_id.get(token_id)
        if entry is None or entry.revoked_at is not None:
            raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
        if not hmac.compare_digest(entry.sha256, token_sha256(token)):
            raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
        return Principal(entry.id, entry.name, entry.role, entry.workspaces)
