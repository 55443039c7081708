"""The `vectoros` command: `main` and `build_parser` here, one module per command family: `serve`, `train` (synth, train
scorer|embedder), `models` (publish, models ...), `reindex`, `ledger` (export, monitor, quality),
`tokens` (create, list, revoke).

Subcommands import their heavy dependencies only when run, so `vectoros serve`
and `vectoros --help` never load torch, xgboost, sentence-transformers or
scikit-learn.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vectoros import __version__
from vectoros.cli import ledger, models, reindex, serve, tokens, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vectoros", description="VectorOS AI Core: gRPC model server for revenue intelligence"
    )
    parser.add_argument("--version", action="version", version=f"vectoros {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(commands)
    train.add_parser(commands)
    models.add_parser(commands)
    reindex.add_parser(commands)
    ledger.add_parser(commands)
    tokens.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
