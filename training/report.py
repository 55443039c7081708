"""The training report: one self-contained HTML file (PNG figures inlined as base64).

ROC curves and a calibration plot for the model beside its logistic-regression
baseline, feature importance (total gain and mean absolute contribution on the
held-out deals), the metrics table, confusion matrices, the cross-validation
grid, the leakage screen and the export parity checks.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vectoros.core.features import FeatureSpec


@dataclass(frozen=True)
class ReportData:
    title: str
    description: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    uncalibrated: dict[str, float]
    labels: np.ndarray
    probabilities: np.ndarray
    uncalibrated_probabilities: np.ndarray
    baseline_probabilities: np.ndarray
    gains: dict[str, float]
    mean_abs_contributions: dict[str, float]
    cv: Sequence[tuple[dict, float, int, float]]
    screen: dict[str, float]
    excluded: dict[str, str]
    parity: dict[str, float]
    calibration: tuple[float, float]
    params: dict
    features: Sequence[str]


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _roc_figure(data: ReportData):
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    figure, axis = plt.subplots(figsize=(5, 4.5))
    for name, p, auc in (
        ("XGBoost (calibrated)", data.probabilities, data.metrics["roc_auc"]),
        ("logistic regression", data.baseline_probabilities, data.baseline["roc_auc"]),
    ):
        fpr, tpr, _ = roc_curve(data.labels, p)
        axis.plot(fpr, tpr, label=f"{name}, AUC {auc:.3f}")
    axis.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, held-out deals")
    axis.legend(loc="lower right", fontsize=8)
    return figure


def _calibration_figure(data: ReportData, bins: int = 10):
    import matplotlib.pyplot as plt

    figure, (axis, counts) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=(3, 1), sharex=True)
    edges = np.linspace(0, 1, bins + 1)
    for name, p in (
        ("XGBoost calibrated", data.probabilities),
        ("XGBoost uncalibrated", data.uncalibrated_probabilities),
        ("logistic regression", data.baseline_probabilities),
    ):
        index = np.minimum((p * bins).astype(int), bins - 1)
        xs = [p[index == b].mean() for b in range(bins) if (index == b).any()]
        ys = [data.labels[index == b].mean() for b in range(bins) if (index == b).any()]
        axis.plot(xs, ys, "o-", label=name, markersize=4)
    counts.hist(data.probabilities, bins=edges, color="C0", alpha=0.7)
    axis.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    axis.set(ylabel="observed win rate", title="Calibration, held-out deals")
    axis.legend(fontsize=8)
    counts.set(xlabel="predicted win probability", ylabel="deals")
    return figure


def _importance_figure(data: ReportData, top: int = 20):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 0.3 * top + 1.5))
    for axis, values, title in (
        (axes[0], data.gains, "total gain"),
        (axes[1], data.mean_abs_contributions, "mean |contribution| (log-odds), held-out"),
    ):
        ranked = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
        axis.barh([k for k, _ in ranked], [v for _, v in ranked], color="C2")
        axis.set_title(title, fontsize=10)
        axis.tick_params(labelsize=8)
    figure.tight_layout()
    return figure


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(path: Path, data: ReportData) -> Path:
    """Render the report to `path` (HTML, no external resources)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    for build in (_roc_figure, _calibration_figure, _importance_figure):
        figure = build(data)
        figures.append(_png(figure))
        plt.close(figure)
    names = ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "brier", "log_loss", "ece")
    metric_rows = [(n, data.metrics[n], data.uncalibrated[n], data.baseline[n]) for n in names]
    confusion = [
        ("XGBoost", *(int(data.metrics[f"confusion_{c}"]) for c in ("tn", "fp", "fn", "tp"))),
        ("logistic regression", *(int(data.baseline[f"confusion_{c}"]) for c in ("tn", "fp", "fn", "tp"))),
    ]
    cv_rows = [(", ".join(f"{k}={v}" for k, v in p.items()), auc, std, trees) for p, auc, trees, std in data.cv]
    screen_rows = sorted(data.screen.items(), key=lambda kv: -kv[1])[:12]
    spec_note = FeatureSpec.__doc__.splitlines()[0] if FeatureSpec.__doc__ else ""
    sections = [
        f"<h1>{html.escape(data.title)}</h1><p>{html.escape(data.description)}</p>",
        "<h2>Held-out metrics</h2><p>Threshold 0.5 for accuracy, precision, recall, F1 and the confusion "
        "matrix. ECE: expected calibration error over 10 equal-width bins.</p>",
        _table(("metric", "XGBoost calibrated", "XGBoost uncalibrated", "logistic regression"), metric_rows),
        _table(("model", "TN", "FP", "FN", "TP"), confusion),
        f"<p>Platt calibration: p = sigmoid({data.calibration[0]:.4f} &middot; margin + "
        f"{data.calibration[1]:.4f}), fitted on out-of-fold margins of the training period.</p>",
        '<div class="row">' + "".join(figures[:2]) + "</div>",
        "<h2>Feature importance</h2>", figures[2],
        "<h2>Cross-validation</h2><p>Grouped by deal, stratified; early stopping per fold; best first. "
        f"Chosen: {html.escape(str(data.params))}</p>",
        _table(("setting", "mean ROC AUC", "std", "trees (median)"), cv_rows),
        "<h2>Leakage screen</h2><p>Each feature's out-of-fold ROC AUC on its own (highest first). A feature "
        "that alone separates won from lost almost perfectly is read after the outcome and is left out.</p>",
        _table(("feature", "single-feature AUC"), screen_rows),
        "<h2>Features left out</h2>",
        _table(("feature", "reason"), sorted(data.excluded.items())) if data.excluded else "<p>None.</p>",
        "<h2>Export parity (held-out rows)</h2>",
        _table(("check", "max abs difference"), sorted(data.parity.items())),
        f"<h2>Features ({len(data.features)})</h2><p>{html.escape(', '.join(data.features))}</p>",
        f"<p><small>{html.escape(spec_note)}</small></p>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px;text-align:right}td:first-child,th:first-child{text-align:left}"
        ".row{display:flex;gap:1em;flex-wrap:wrap}"
    )
    path.write_text(
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(data.title)}</title>'
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n",
        encoding="utf-8",
    )
    return path
