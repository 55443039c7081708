"""The `vectoros` command: one entry point for serving, training and operations.

Subcommands import their heavy dependencies only when run, so `vectoros serve`
never loads torch, xgboost or scikit-learn.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vectoros import __version__


def _serve(args: argparse.Namespace) -> int:
    from server.app import serve
    from server.config import from_namespace

    return serve(from_namespace(args))


def build_parser() -> argparse.ArgumentParser:
    from server.config import add_arguments

    parser = argparse.ArgumentParser(
        prog="vectoros", description="VectorOS AI Core: gRPC model server for revenue intelligence"
    )
    parser.add_argument("--version", action="version", version=f"vectoros {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gRPC server")
    add_arguments(serve)
    serve.set_defaults(func=_serve)

    from server.models import cli as models_cli
    from training import embedder, export, reindex, scorer, synth

    synth.add_parser(commands)
    train = commands.add_parser("train", help="train or export a model artifact (needs the train extra)")
    trainers = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    scorer.add_parser(trainers)
    embedder.add_parser(trainers)
    models_cli.add_parser(commands)
    reindex.add_parser(commands)
    export.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
