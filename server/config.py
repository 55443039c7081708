"""Server configuration: parsed once from flags and environment into a frozen object.

Every flag has an environment variable (`VECTOROS_<NAME>`); a flag given on the
command line wins over the environment, which wins over the default.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    data_dir: Path = Path("./data")
    models: Path = Path("./models")
    # Largest request a client may send. 16 MiB fits a ScoreDeals or Forecast
    # call of tens of thousands of deals with notes; bigger payloads are almost
    # always a client bug, and each in-flight request is held in memory.
    max_receive_mb: int = 16
    # Largest response. An Embed of 256 texts is ~400 KB and an
    # ExportTrainingData chunk is bounded by the server, so 16 MiB is generous.
    max_send_mb: int = 16
    # Seconds SIGTERM waits for in-flight calls before cancelling them.
    grace_seconds: float = 10.0
    # Seconds between scans of the model repository for new versions.
    model_poll_seconds: float = 2.0
    # Calls handled at once; further calls queue in gRPC until one finishes.
    max_concurrent_rpcs: int = 256
    log_level: str = "INFO"
    # Qdrant server URL for the similarity store; empty uses the embedded store.
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    # Re-embed stored deals into the new embedder's collection when a new
    # embedder version is in production (searches use the old one meanwhile).
    reindex_on_start: bool = False
    # Candidates a similarity search keeps while walking the HNSW graph (Qdrant's
    # `hnsw_ef`); 0 leaves Qdrant's default, the index's ef_construct (100). Lower
    # is faster with lower recall (bench/bench_similarity.py measures both).
    search_hnsw_ef: int = 0
    # Dynamic batching of embeddings.
    embed_max_batch: int = 32
    embed_max_wait_ms: float = 2.0
    embed_max_queue: int = 1024
    # Insight generator: Claude when an API key is set, else the rules engine.
    anthropic_api_key: str = ""
    anthropic_model: str = "claude-sonnet-4-6"
    # Bearer tokens (server.auth): the file of token hashes, roles and workspaces.
    # Empty: no authentication, refused on a non-loopback host unless
    # allow_unauthenticated is set.
    tokens_file: str = ""
    allow_unauthenticated: bool = False
    # Calls one token may have running at once; beyond it RESOURCE_EXHAUSTED.
    max_inflight_per_token: int = 64
    # TLS: the server's certificate chain and key (PEM); with a client CA, mutual
    # TLS (clients must present a certificate that CA signed).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Prometheus /metrics on its own port; 0 = off.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


_HELP = {
    "host": "interface to listen on",
    "port": "TCP port; 0 picks a free one",
    "data_dir": "folder for persistent state (vector store, ledger)",
    "models": "model repository folder (<name>/<version>/manifest.json)",
    "max_receive_mb": "largest accepted request, MiB",
    "max_send_mb": "largest response, MiB",
    "grace_seconds": "how long SIGTERM waits for in-flight calls",
    "model_poll_seconds": "how often the model repository is scanned",
    "max_concurrent_rpcs": "calls handled at once",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "qdrant_url": "Qdrant server URL; empty = embedded store under --data-dir",
    "qdrant_api_key": "Qdrant API key",
    "search_hnsw_ef": "HNSW candidates per similarity search (Qdrant hnsw_ef); 0 = Qdrant's default (100)",
    "reindex_on_start": "re-embed stored deals when the embedder version changes (vectoros reindex in the server)",
    "embed_max_batch": "largest embedding batch",
    "embed_max_wait_ms": "longest wait to fill an embedding batch, ms",
    "embed_max_queue": "texts waiting for the embedder before RESOURCE_EXHAUSTED",
    "anthropic_api_key": "enables the Claude insight generator",
    "anthropic_model": "Claude model id for insights",
    "tokens_file": "bearer tokens file (vectoros tokens create); empty = no authentication",
    "allow_unauthenticated": "serve a non-loopback address without a tokens file (logs a warning)",
    "max_inflight_per_token": "calls one token may have in flight before RESOURCE_EXHAUSTED; 0 = no cap",
    "tls_cert": "TLS certificate chain (PEM); with --tls-key serves TLS",
    "tls_key": "TLS private key (PEM)",
    "tls_client_ca": "CA bundle (PEM) that client certificates must chain to: mutual TLS",
    "metrics_port": "Prometheus /metrics port; 0 = off",
    "metrics_host": "interface for the metrics port",
}

SECRETS = frozenset({"anthropic_api_key", "qdrant_api_key"})

# Variables that keep their conventional names instead of VECTOROS_*.
_ENV_OVERRIDES = {"anthropic_api_key": "ANTHROPIC_API_KEY"}


def env_name(field_name: str) -> str:
    return _ENV_OVERRIDES.get(field_name, f"VECTOROS_{field_name.upper()}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per config field, defaulting to its environment variable."""
    for f in fields(ServerConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        kind = type(default) if not isinstance(default, Path) else Path
        if f.name in SECRETS:
            continue  # secrets come from the environment only, never from argv (visible in ps)
        if kind is bool:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{_HELP[f.name]} (env {env_name(f.name)}=1; default {default})",
            )
            continue
        parser.add_argument(
            flag, type=kind, default=None, help=f"{_HELP[f.name]} (env {env_name(f.name)}; default {default})"
        )


def from_namespace(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ServerConfig:
    """Build the config from parsed flags, then environment, then defaults."""
    environ = dict(os.environ) if environ is None else environ
    values = {}
    for f in fields(ServerConfig):
        kind = type(f.default) if not isinstance(f.default, Path) else Path
        value = getattr(args, f.name, None)
        if value is None and env_name(f.name) in environ:
            raw = environ[env_name(f.name)]
            try:
                value = _parse_bool(raw) if kind is bool else kind(raw)
            except ValueError:
                raise SystemExit(f"{env_name(f.name)}: cannot read {raw!r} as {kind.__name__}") from None
        if value is not None:
            values[f.name] = value
    config = ServerConfig(**values)
    _check(config)
    return config


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def _check(config: ServerConfig) -> None:
    if not 0 <= config.port <= 65535:
        raise SystemExit(f"--port: must be in [0, 65535], got {config.port}")
    for name in ("max_receive_mb", "max_send_mb", "max_concurrent_rpcs", "embed_max_batch", "embed_max_queue"):
        if getattr(config, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')}: must be >= 1")
    for name in ("grace_seconds", "model_poll_seconds", "embed_max_wait_ms"):
        if not getattr(config, name) >= 0:
            raise SystemExit(f"--{name.replace('_', '-')}: must be >= 0")
    if config.search_hnsw_ef < 0:
        raise SystemExit("--search-hnsw-ef: must be >= 0 (0 = Qdrant's default)")
    if config.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SystemExit("--log-level: must be DEBUG, INFO, WARNING or ERROR")
    if not 0 <= config.metrics_port <= 65535:
        raise SystemExit(f"--metrics-port: must be in [0, 65535] (0 = off), got {config.metrics_port}")
    if config.max_inflight_per_token < 0:
        raise SystemExit("--max-inflight-per-token: must be >= 0 (0 = no cap)")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise SystemExit("--tls-cert and --tls-key: give both or neither")
    if config.tls_client_ca and not config.tls_cert:
        raise SystemExit("--tls-client-ca: needs --tls-cert and --tls-key (mutual TLS is TLS first)")
    for name in ("tokens_file", "tls_cert", "tls_key", "tls_client_ca"):
        value = getattr(config, name)
        if value and not Path(value).is_file():
            raise SystemExit(f"--{name.replace('_', '-')}: no such file {value!r}")
    if not config.tokens_file and not config.allow_unauthenticated and not is_loopback(config.host):
        raise SystemExit(
            f"--host {config.host}: refusing to serve a non-loopback address without authentication; "
            "give --tokens-file (create one with `vectoros tokens create`) or --allow-unauthenticated"
        )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
