"""Command line for the model repository, wired into `vectoros` by `add_parser`:

    vectoros publish ARTIFACT_DIR [--models DIR] [--force] [--canary PERCENT]
    vectoros models list [--models DIR] [--json]
    vectoros models show NAME [--version V] [--models DIR]
    vectoros models rollback NAME [--to VERSION] [--models DIR]
    vectoros models canary NAME (--version V --percent P | --clear) [--models DIR]
    vectoros models promote NAME [--models DIR]

`--models` defaults to the environment variable VECTOROS_MODELS, then ./models.
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
    """Add the `publish` and `models` commands to the `vectoros` parser."""
    publish = subparsers.add_parser(
        "publish",
        help="check an artifact and publish it as the next version",
        description="Verify checksums, run the golden inputs in onnxruntime, compare held-out metrics "
        "with production (refusing a worse model unless --force), copy the artifact in as the next "
        "version and label it production (or canary).",
    )
    publish.add_argument("artifact_dir", metavar="ARTIFACT_DIR", type=Path, help="a training output with manifest.json")
    _models_argument(publish)
    publish.add_argument("--force", action="store_true", help="publish even if the primary metric is worse")
    publish.add_argument(
        "--canary", type=float, metavar="PERCENT", help="label the new version canary with this share of traffic"
    )
    publish.set_defaults(func=_publish)

    models = subparsers.add_parser("models", help="list model versions and move labels")
    commands = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="versions, labels, creation times and key metrics")
    _models_argument(listing)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=_list)

    show = commands.add_parser("show", help="print a version's manifest (production by default)")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--version", type=int, help="the version (default: production)")
    _models_argument(show)
    show.set_defaults(func=_show)

    rollback = commands.add_parser("rollback", help="point production at an earlier version")
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("--to", type=int, metavar="VERSION", help="the version (default: the one before production)")
    _models_argument(rollback)
    rollback.set_defaults(func=_rollback)

    canary = commands.add_parser("canary", help="send a share of traffic to a version, or clear the canary")
    canary.add_argument("name", metavar="NAME")
    canary.add_argument("--version", type=int)
    canary.add_argument("--percent", type=float, help="share of deals, (0, 100]")
    canary.add_argument("--clear", action="store_true", help="remove the canary label")
    _models_argument(canary)
    canary.set_defaults(func=_canary)

    promote = commands.add_parser("promote", help="make the canary production")
    promote.add_argument("name", metavar="NAME")
    _models_argument(promote)
    promote.set_defaults(func=_promote)


def _models_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models", type=Path, default=None, metavar="DIR",
        help="model repository (default: $VECTOROS_MODELS, then ./models)",
    )


def _root(args: argparse.Namespace) -> Path:
    if args.models is not None:
        return args.models
    return Path(os.environ.get("VECTOROS_MODELS") or "models")


def _refused(exc: Exception) -> int:
    message = getattr(exc, "message", None) or str(exc)
    print(f"vectoros: {message}", file=sys.stderr)
    return EXIT_REFUSED


def _print_labels(name: str, labels) -> None:
    canary = f", canary {labels.canary} at {labels.canary_percent:g}%" if labels.canary is not None else ""
    print(f"{name}: production {labels.production}{canary}")


def _publish(args: argparse.Namespace) -> int:
    from server.models.publish import publish
    from vectoros.core.errors import VectorOSError

    try:
        result = publish(args.artifact_dir, _root(args), force=args.force, canary_percent=args.canary)
    except VectorOSError as exc:
        return _refused(exc)
    except OSError as exc:  # disk full, permissions: nothing was published
        print(f"vectoros: publish failed, nothing published: {exc}", file=sys.stderr)
        return 1
    previous = f" (production was {result.previous_production})" if result.previous_production else ""
    print(f"published {result.name} version {result.version} as {result.label}{previous}")
    for delta in result.metric_comparison:
        verdict = {True: "better", False: "worse", None: ""}[delta.better]
        candidate, production = _number(delta.candidate), _number(delta.production)
        print(f"  {delta.name:<28} {candidate:>10}  production {production:>10}  {verdict}")
    return 0


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _rows(root: Path) -> list[dict]:
    from server.models.publish import PRIMARY_METRIC
    from server.models.repository import ModelRepository
    from vectoros.core.errors import VectorOSError

    repo = ModelRepository(root)
    rows = []
    for name in repo.names():
        try:
            labels = repo.labels(name)
            label_error = None
        except VectorOSError as exc:
            labels, label_error = None, exc.message
        for version in repo.versions(name):
            row: dict = {"name": name, "version": version, "labels": []}
            if labels is not None and labels.production == version:
                row["labels"].append("production")
            if labels is not None and labels.canary == version:
                row["labels"].append(f"canary {labels.canary_percent:g}%")
            try:
                manifest = repo.manifest(name, version)
            except VectorOSError as exc:
                row["error"] = exc.message
            else:
                primary = PRIMARY_METRIC.get(manifest.kind)
                ordered = sorted(manifest.metrics, key=lambda metric: (metric != primary, metric))
                row.update(kind=manifest.kind, created_at=manifest.created_at,
                           metrics={metric: manifest.metrics[metric] for metric in ordered})
            if label_error:
                row["error"] = f"labels: {label_error}"
            rows.append(row)
    return rows


def _list(args: argparse.Namespace) -> int:
    root = _root(args)
    if not root.is_dir():
        return _refused(FileNotFoundError(f"--models: {root} is not a folder"))
    rows = _rows(root)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "VERSION", "LABELS", "KIND", "CREATED", "KEY METRICS")]
    for row in rows:
        if "metrics" in row:
            metrics = "  ".join(f"{k}={v:.4g}" for k, v in list(row["metrics"].items())[:4])
        else:
            metrics = ""
        if "error" in row:
            metrics = f"BROKEN: {row['error']}"
        table.append((row["name"], str(row["version"]), ",".join(row["labels"]) or "-",
                      row.get("kind", "?"), row.get("created_at", "?"), metrics))
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line[:5], widths, strict=True)) + "  " + line[5])
    return 0


def _show(args: argparse.Namespace) -> int:
    from server.models.repository import ModelRepository
    from vectoros.core.errors import VectorOSError

    repo = ModelRepository(_root(args))
    try:
        version = args.version if args.version is not None else repo.labels(args.name).production
        if version is None:
            return _refused(LookupError(f"{args.name}: no versions"))
        print(repo.manifest(args.name, version).to_json(), end="")
    except VectorOSError as exc:
        return _refused(exc)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from server.models.repository import ModelRepository
    from vectoros.core.errors import VectorOSError

    try:
        labels = ModelRepository(_root(args)).rollback(args.name, to=args.to)
    except VectorOSError as exc:
        return _refused(exc)
    _print_labels(args.name, labels)
    return 0


def _canary(args: argparse.Namespace) -> int:
    from server.models.repository import ModelRepository
    from vectoros.core.errors import VectorOSError

    repo = ModelRepository(_root(args))
    try:
        if args.clear:
            if args.version is not None or args.percent is not None:
                return _refused(ValueError("--clear takes no --version or --percent"))
            labels = repo.clear_canary(args.name)
        else:
            if args.version is None or args.percent is None:
                return _refused(ValueError("--version and --percent are required (or --clear)"))
            labels = repo.set_canary(args.name, args.version, args.percent)
    except VectorOSError as exc:
        return _refused(exc)
    _print_labels(args.name, labels)
    return 0


def _promote(args: argparse.Namespace) -> int:
    from server.models.repository import ModelRepository
    from vectoros.core.errors import VectorOSError

    try:
        labels = ModelRepository(_root(args)).promote(args.name)
    except VectorOSError as exc:
        return _refused(exc)
    _print_labels(args.name, labels)
    return 0
