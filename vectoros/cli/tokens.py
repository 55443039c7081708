"""Command line for the bearer tokens file, wired into `vectoros` by `add_parser`:

    vectoros tokens create --role reader|writer|admin [--workspace W ...] [--name NAME] [--tokens FILE]
    vectoros tokens list [--tokens FILE] [--json]
    vectoros tokens revoke TOKEN_ID [--tokens FILE]

`--tokens` defaults to the environment variable VECTOROS_TOKENS_FILE, then
./tokens.json. `create` prints the token once, on stdout (nothing else is
printed there, so `TOKEN=$(vectoros tokens create ...)` works); the file keeps
only its hash. A running server picks changes up within a second.
Exit codes: 0 done, 2 refused or invalid (the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_REFUSED = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    tokens = subparsers.add_parser("tokens", help="create, list and revoke the server's bearer tokens")
    commands = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")

    create = commands.add_parser("create", help="add a token and print it (once)")
    create.add_argument("--role", required=True, choices=("reader", "writer", "admin"),
                        help="reader: reads, Embed, Score, Forecast, insights; writer: also upserts, deletes, "
                             "feedback and outcomes; admin: every workspace")
    create.add_argument("--workspace", action="append", default=[], metavar="W",
                        help="a workspace the token holds (repeat for several; none for admin)")
    create.add_argument("--name", default="", help="who or what the token is for (shown in listings)")
    _tokens_argument(create)
    create.set_defaults(func=_create)

    listing = commands.add_parser("list", help="every token: id, name, role, workspaces, created, revoked")
    _tokens_argument(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_list)

    revoke = commands.add_parser("revoke", help="revoke a token by its id (the server refuses it within a second)")
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    _tokens_argument(revoke)
    revoke.set_defaults(func=_revoke)


def _tokens_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", type=Path, default=None,
                        help="tokens file (env VECTOROS_TOKENS_FILE; default ./tokens.json)")


def _path(args: argparse.Namespace) -> Path:
    return args.tokens or Path(os.environ.get("VECTOROS_TOKENS_FILE") or "tokens.json")


def _refused(message: str) -> int:
    print(f"vectoros tokens: {message}", file=sys.stderr)
    return EXIT_REFUSED


def _create(args: argparse.Namespace) -> int:
    from server.auth import TokenFileError, create_token
    from vectoros.core.errors import InvalidInput

    try:
        token, entry = create_token(_path(args), args.role, args.workspace, name=args.name)
    except (InvalidInput, TokenFileError) as exc:
        return _refused(str(exc))
    print(token)
    print(f"created token {entry.id} ({entry.role.value}, workspaces: {', '.join(sorted(entry.workspaces)) or 'all'})"
          f" in {_path(args)}; it is shown only now", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    from server.auth import TokenFileError, read_tokens

    try:
        tokens = read_tokens(_path(args))
    except TokenFileError as exc:
        return _refused(str(exc))
    if args.json:
        for token in tokens:
            entry = token.to_json()
            del entry["sha256"]
            print(json.dumps(entry))
        return 0
    print(f"{'ID':<14}{'ROLE':<8}{'CREATED':<22}{'REVOKED':<22}{'NAME':<20}WORKSPACES")
    for token in tokens:
        workspaces = ",".join(sorted(token.workspaces)) or "(all)"
        print(f"{token.id:<14}{token.role.value:<8}{token.created_at:<22}{token.revoked_at or '-':<22}"
              f"{token.name or '-':<20}{workspaces}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from server.auth import TokenFileError, revoke_token

    try:
        token = revoke_token(_path(args), args.token_id)
    except TokenFileError as exc:
        return _refused(str(exc))
    except KeyError:
        return _refused(f"no token {args.token_id!r} in {_path(args)}")
    print(f"revoked {token.id} at {token.revoked_at}", file=sys.stderr)
    return 0
