"""`vectoros serve`: run the gRPC server (its flags are `server.config`'s)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `serve` to the `vectoros` subparsers."""
    from server.config import add_arguments

    serve = subparsers.add_parser("serve", help="run the gRPC server")
    add_arguments(serve)
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from server.app import serve
    from server.config import from_namespace

    return serve(from_namespace(args))
