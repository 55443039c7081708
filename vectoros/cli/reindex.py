"""Re-embed the stored deals with the production embedder: `vectoros reindex`.

    vectoros reindex --data-dir ./data --models ./models [--qdrant-url URL] [--drop-old]

When a new embedder version goes to production, its vectors are not comparable
with the stored ones, so the similarity store needs a collection for it. This
command reads every deal from the newest complete collection, renders it again
through the deal-to-text template, embeds it with the production embedder, and
writes it to that version's collection (``embedder-v<version>``), with a
progress bar. It builds the HNSW index (embedded store) and marks the collection
complete last: the server reads only complete collections, so it keeps serving
the old one until then. An interrupted run resumes where it stopped (deals
already embedded with the same text are not embedded again).

With the embedded store, run it while the server is stopped: a collection opens
in one process at a time, and the command says so if the server holds it.
`--drop-old` deletes the collections of older embedder versions afterwards.
Exit codes: 0 done (or nothing to do), 1 failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from server.engines.similarity import EMBEDDER, reindex
    from server.models.registry import ModelRegistry
    from server.stores import open_store
    from server.stores.base import StoreError
    from vectoros.core.embedder import EmbedderSettings, load_embedder
    from vectoros.core.errors import VectorOSError

    registry = ModelRegistry(
        args.models,
        {"embedder": lambda path, manifest: load_embedder(path, manifest, EmbedderSettings(sub_batch_size=32))},
        names=[EMBEDDER],
    )
    registry.refresh(notify=False)
    try:
        loaded = registry.select(EMBEDDER)
    except VectorOSError as exc:
        print(f"reindex: {exc.message}", file=sys.stderr)
        return 1
    model = loaded.model
    store = open_store(args.data_dir, args.qdrant_url, os.environ.get("VECTOROS_QDRANT_API_KEY", ""))
    bar = tqdm(total=0, unit="deal", desc=f"embedder v{loaded.version}", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = reindex(
            store,
            loaded.version,
            model.dimension,
            lambda texts: model.embed(texts).vectors,
            batch_size=args.batch_size,
            optimize=not args.no_optimize,
            progress=progress,
        )
    except (StoreError, VectorOSError) as exc:
        bar.close()
        print(f"reindex: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    bar.close()
    if result.source is None and result.embedded == 0 and result.seconds == 0.0:
        print(f"{result.target} is already complete ({result.total} deals); nothing to do")
    else:
        print(
            f"{result.target}: {result.total} deals from {result.source or 'an empty store'}, "
            f"{result.embedded} embedded, {'indexed, ' if result.optimized else ''}complete in {result.seconds:.1f} s"
        )
    if args.drop_old:
        for info in store.list_collections():
            if info.embedder_name == EMBEDDER and info.order < (loaded.version, 0):
                store.drop_collection(info.name)
                print(f"dropped {info.name}")
    store.close()
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `reindex`: `vectoros reindex --data-dir DIR --models DIR`."""
    parser = subparsers.add_parser(
        "reindex",
        help="re-embed stored deals with the production embedder",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--data-dir", type=Path, default=Path("./data"), help="the server's --data-dir")
    parser.add_argument("--models", type=Path, default=Path("./models"), help="model repository folder")
    parser.add_argument(
        "--qdrant-url", default=os.environ.get("VECTOROS_QDRANT_URL", ""), help="Qdrant server (default: embedded)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="deals read and embedded per step")
    parser.add_argument("--no-optimize", action="store_true", help="skip building the HNSW index")
    parser.add_argument("--drop-old", action="store_true", help="delete older embedder versions' collections")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
