"""Deal vector stores: Qdrant Edge embedded under `--data-dir` (the default) or a
Qdrant server through qdrant-client (`--qdrant-url`), behind one interface
(`server.stores.base`)."""

from __future__ import annotations

import os
from pathlib import Path

from server.stores.base import VectorStore

VECTORS_DIR = "vectors"


def open_store(data_dir: str | os.PathLike[str], qdrant_url: str = "", qdrant_api_key: str = "") -> VectorStore:
    """The store a server configuration asks for: remote when a URL is given, else
    embedded under ``<data_dir>/vectors``. Imports only the adapter it uses."""
    if qdrant_url:
        from server.stores.remote import RemoteStore

        return RemoteStore.connect(qdrant_url, qdrant_api_key or None)
    from server.stores.edge import EdgeStore

    return EdgeStore(Path(data_dir) / VECTORS_DIR)
