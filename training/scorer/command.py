"""`vectoros train scorer`: its arguments and what it prints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.scorer.config import DEFAULT_GRID, SMALL_GRID, TrainConfig, TrainingError
from training.scorer.train import REPORT_FILE, train_scorer
from vectoros.core.features import SpecOverrides
from vectoros.core.similar_features import DEFAULT_K


def run(args: argparse.Namespace) -> int:
    from training.records import DataError

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


def add_parser(subparsers) -> None:
    """Add `scorer` to the subparsers of `vectoros train`."""
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
    parser.set_defaults(func=run)
