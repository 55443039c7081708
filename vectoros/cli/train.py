"""Commands that make training data and artifacts: `vectoros synth` and
`vectoros train scorer|embedder`. The work is done by `training.synth`,
`training.scorer` and `training.embedder`; this module parses and prints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vectoros.core.similar_features import DEFAULT_K


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `synth` and `train` (with `scorer` and `embedder`) to the `vectoros` subparsers."""
    _add_synth(subparsers)
    train = subparsers.add_parser("train", help="train or export a model artifact (needs the train extra)")
    trainers = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    _add_scorer(trainers)
    _add_embedder(trainers)


# --- synth ---------------------------------------------------------------------------


def _add_synth(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("synth", help="write synthetic deal histories (CSV or JSON Lines)")
    parser.add_argument("--deals", type=int, required=True, help="number of deals")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same file)")
    parser.add_argument("--out", type=Path, required=True, help="output file, .csv or .jsonl")
    parser.add_argument("--end", default=None, help="end of the period, ISO time (default 2025-06-30)")
    parser.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from training.records import write_deals
    from training.synth import DATE_COLUMNS, DEFAULT_END, synth_deals
    from vectoros.core.deals import Outcome

    end = DEFAULT_END if args.end is None else datetime.fromisoformat(args.end.replace("Z", "+00:00"))
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    records = synth_deals(args.deals, seed=args.seed, end=end)
    path = write_deals(records, args.out, custom_dates=DATE_COLUMNS)
    won = sum(r.outcome is Outcome.WON for r in records)
    lost = sum(r.outcome is Outcome.LOST for r in records)
    print(f"wrote {len(records)} deals to {path}: {won} won, {lost} lost, {len(records) - won - lost} open")
    return 0


# --- train scorer --------------------------------------------------------------------


def _add_scorer(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("scorer", help="train the win/loss scorer and export it to ONNX")
    parser.add_argument("--data", type=Path, required=True, help="deal records, .csv or .jsonl")
    parser.add_argument("--out", type=Path, required=True, help="artifact folder (created, must be empty)")
    parser.add_argument("--feature-spec", type=Path, default=None, help="JSON overrides: numeric, categorical, "
                        "date, exclude, min_category_count, max_categories")
    parser.add_argument("--embedder", type=Path, default=None,
                        help="embedder artifact or published version folder: adds the similar-deal features "
                        "(win rate and mean similarity of the k most similar closed deals)")
    parser.add_argument("--similar-k", type=int, default=DEFAULT_K, help="neighbours of the similarity features")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="newest share of deals held out")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--grid", choices=("default", "small"), default="default", help="hyperparameter grid")
    parser.add_argument("--high-risk-below", type=float, default=0.3, help="win probability below which risk is high")
    parser.add_argument("--low-risk-from", type=float, default=0.6, help="win probability from which risk is low")
    parser.add_argument("--leakage-auc", type=float, default=0.97,
                        help="leave out a feature that alone reaches this AUC (1.0 turns the screen off)")
    parser.add_argument("--allow-perfect", action="store_true", help="accept a held-out ROC AUC >= 0.995")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="xgboost threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_train_scorer)


def _train_scorer(args: argparse.Namespace) -> int:
    from training.records import DataError
    from training.scorer import DEFAULT_GRID, REPORT_FILE, SMALL_GRID, TrainConfig, TrainingError, train_scorer
    from vectoros.core.features import SpecOverrides

    overrides = None
    if args.feature_spec is not None:
        try:
            overrides = SpecOverrides.from_dict(json.loads(Path(args.feature_spec).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            print(f"error: {args.feature_spec}: {exc}")
            return 2
    config = TrainConfig(
        test_fraction=args.test_fraction,
        folds=args.folds,
        grid=SMALL_GRID if args.grid == "small" else DEFAULT_GRID,
        high_risk_below=args.high_risk_below,
        low_risk_from=args.low_risk_from,
        leakage_auc=args.leakage_auc,
        allow_perfect=args.allow_perfect,
        seed=args.seed,
        jobs=args.jobs,
        progress=not args.quiet,
    )
    try:
        result = train_scorer(args.data, args.out, config, overrides, embedder=args.embedder, similar_k=args.similar_k)
    except (DataError, TrainingError) as exc:
        print(f"error: {exc}")
        return 2
    m = result.metrics
    print(f"wrote {result.out_dir} ({len(result.spec.features)} features, {int(m['trees'])} trees)")
    print(
        f"held-out: ROC AUC {m['roc_auc']:.4f} (baseline LR {m['baseline_lr_roc_auc']:.4f}), "
        f"Brier {m['brier']:.4f}, ECE {m['ece']:.4f}, log loss {m['log_loss']:.4f}, F1 {m['f1']:.4f}"
    )
    print(f"ONNX parity max |dp| {m['onnx_parity_max_abs_diff']:.2e}; report: {result.out_dir / REPORT_FILE}")
    by_reason: dict[str, list[str]] = {}
    for name, reason in result.spec.excluded.items():
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        print(f"left out ({reason}): {', '.join(names)}")
    return 0


# --- train embedder ------------------------------------------------------------------


def _add_embedder(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embedder",
        help="export all-MiniLM-L6-v2 to ONNX (fp32 + int8) with a manifest",
        description="Export all-MiniLM-L6-v2 to ONNX (fp32 and int8) as the `embedder` artifact.",
    )
    parser.add_argument("--out", required=True, type=Path, help="new or empty folder for the artifact")
    parser.set_defaults(func=_train_embedder)


def _train_embedder(args: argparse.Namespace) -> int:
    from training.embedder import export_embedder

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"--out {out}: exists and is not empty", file=sys.stderr)
        return 2
    export_embedder(out, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps({"out": str(out), "manifest": str(out / "manifest.json")}))
    return 0
