"""Train the win/loss scorer and export it (`vectoros train scorer`).

From a deal file (docs/deal-records.md) to a model artifact ready for
`vectoros publish`:

1. Read the records; closed deals (won / lost) are the examples, open ones are
   skipped. Split by time: the newest `test_fraction` of deals (by creation)
   are held out, the model learns from the older ones.
2. Fit the feature spec on the training deals only, and screen every feature
   for leakage: a feature that alone separates won from lost almost perfectly
   (out-of-fold AUC >= `leakage_auc`) is left out and reported.
3. Five-fold cross-validation (grouped by deal, stratified) over a small grid
   of XGBoost settings, each fold with early stopping; class imbalance is
   handled with `scale_pos_weight`. The best setting's out-of-fold margins fit
   the Platt calibration (two numbers, applied by the server).
4. The final model trains on all training deals and is measured on the held-out
   ones beside a logistic-regression baseline: ROC AUC, PR AUC, accuracy,
   precision, recall, F1, Brier score, log loss, expected calibration error
   and the confusion matrix.
5. Export: ONNX with onnxmltools (target opset 15), plus a `contributions`
   output computed by a second tree ensemble built from the same trees (see
   `server.engines.scoring`); parity checks on the held-out rows against
   xgboost (recorded in the metrics), `report.html` and `manifest.json`.

With `embedder` (`--embedder DIR`: an embedder artifact or a published version
folder), two similarity features join the matrix (`similar_win_rate`,
`similar_mean_score`, `vectoros.core.similar_features`): every record's
`deal_to_text` is embedded, and each record's neighbours are the other closed
deals of its workspace that closed before its snapshot. A training row's
neighbours come from the training deals only (held-out outcomes never shape the
model); a held-out row may use any deal closed before its snapshot, as the
server's store would hold it. A deal with several snapshots is a neighbour
through its newest one (the store keeps a deal's last upsert).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.features import FeatureSpec, SpecOverrides, featurize, fit_feature_spec
from vectoros.core.similar_features import (
    DEFAULT_K,
    SIMILARITY_FEATURES,
    SimilaritySpec,
    similarity_features,
)

MODEL_FILE = "model.onnx"
REPORT_FILE = "report.html"
TARGET_OPSET = 15  # the highest onnxmltools converts XGBoost to (docs: MEASURED.md)
PARITY_LIMIT = 1e-4

DEFAULT_GRID = tuple(
    {"max_depth": depth, "learning_rate": rate, "min_child_weight": weight}
    for depth in (3, 5)
    for rate in (0.05, 0.1)
    for weight in (1, 5)
)
SMALL_GRID = ({"max_depth": 3, "learning_rate": 0.1, "min_child_weight": 1},
              {"max_depth": 5, "learning_rate": 0.1, "min_child_weight": 5})


class TrainingError(RuntimeError):
    """Training cannot produce a trustworthy model from this data."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. `leakage_auc` >= 1 turns the screen off;
    `allow_perfect` accepts a held-out ROC AUC >= 0.995 (otherwise an error)."""

    test_fraction: float = 0.2
    folds: int = 5
    grid: tuple[dict, ...] = DEFAULT_GRID
    max_trees: int = 600
    early_stopping_rounds: int = 40
    high_risk_below: float = 0.3
    low_risk_from: float = 0.6
    leakage_auc: float = 0.97
    allow_perfect: bool = False
    golden_rows: int = 8
    seed: int = 0
    jobs: int = 2
    progress: bool = True


@dataclass(frozen=True)
class TrainResult:
    """What a run produced. `model` is the xgboost classifier (kept in memory for
    benchmarks and tests; the artifact holds its ONNX form)."""

    out_dir: Path
    manifest: object  # vectoros.core.manifest.Manifest
    metrics: dict[str, float]
    spec: FeatureSpec
    params: dict
    model: object = field(repr=False)
    test_features: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)


# --- metrics -------------------------------------------------------------------------


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| win rate over equal-width probability bins, weighted by bin size."""
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(probabilities[mask].mean() - labels[mask].mean())
    return float(total)


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    from sklearn import metrics

    predicted = (probabilities >= threshold).astype(int)
    tn, fp, fn, tp = metrics.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(metrics.roc_auc_score(labels, probabilities)),
        "pr_auc": float(metrics.average_precision_score(labels, probabilities)),
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "precision": float(metrics.precision_score(labels, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(labels, predicted, zero_division=0)),
        "f1": float(metrics.f1_score(labels, predicted, zero_division=0)),
        "brier": float(metrics.brier_score_loss(labels, probabilities)),
        "log_loss": float(metrics.log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "ece": expected_calibration_error(labels, probabilities),
        "confusion_tn": float(tn),
        "confusion_fp": float(fp),
        "confusion_fn": float(fn),
        "confusion_tp": float(tp),
    }


# --- data ----------------------------------------------------------------------------


def time_split(records: Sequence[DealRecord], test_fraction: float) -> tuple[list[DealRecord], list[DealRecord]]:
    """(older, newer): whole deals by creation time (all snapshots of a deal on one side)."""
    created: dict[str, datetime] = {}
    for record in records:
        moment = record.created_at or record.snapshot_at
        assert moment is not None
        created[record.deal_id] = min(created.get(record.deal_id, moment), moment)
    deals = sorted(created, key=lambda d: (created[d], d))
    test_count = max(1, round(len(deals) * test_fraction))
    newer = set(deals[len(deals) - test_count:])
    return [r for r in records if r.deal_id not in newer], [r for r in records if r.deal_id in newer]


def labels_of(records: Sequence[DealRecord]) -> np.ndarray:
    return np.array([r.outcome is Outcome.WON for r in records], dtype=np.int32)


def leakage_screen(
    features: np.ndarray, labels: np.ndarray, groups: Sequence[str], spec: FeatureSpec, seed: int
) -> dict[str, float]:
    """Each feature's out-of-fold ROC AUC alone (two folds by deal): values are binned
    (categories as they are, numbers in up to 20 quantile bins, missing as its own
    bin) and each bin scores its win rate in the other fold. A post-outcome column
    scores near 1."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    unique = sorted(set(groups))
    half = {g: bool(b) for g, b in zip(unique, rng.integers(0, 2, len(unique)), strict=True)}
    fold = np.array([half[g] for g in groups])
    base_rate = labels.mean()
    scores: dict[str, float] = {}
    for j, name in enumerate(spec.features):
        column = features[:, j].astype(np.float64)
        missing = np.isnan(column)
        if spec.is_categorical(name):
            bins = np.where(missing, -1, column).astype(np.int64)
        else:
            # Bin i holds edges[i-1] < x <= edges[i]: a point mass at the minimum
            # (a column that is 0 for every lost deal) gets a bin of its own.
            known = column[~missing]
            edges = np.unique(np.quantile(known, np.linspace(0, 1, 21))) if known.size else np.zeros(1)
            bins = np.searchsorted(edges, np.nan_to_num(column), side="left").astype(np.int64)
            bins[missing] = -1
        oof = np.empty(len(labels))
        for side in (False, True):
            fit, use = fold == side, fold != side
            rates = {b: labels[fit][bins[fit] == b].mean() for b in np.unique(bins[fit])}
            oof[use] = [rates.get(b, base_rate) for b in bins[use]]
        scores[name] = float(roc_auc_score(labels, oof)) if len(set(labels.tolist())) == 2 else 0.5
    return scores


# --- trees ---------------------------------------------------------------------------


def export_trees(booster) -> dict[str, np.ndarray]:
    """The booster's trees as flat arrays, all trees concatenated with global child
    indices: `feature` (-1 at leaves), `threshold` (a row goes left when
    `x < threshold`), `left`, `right`, `missing` (where NaN goes; leaves point to
    themselves), `value` (each node's expected value: the cover-weighted mean of
    its leaves, as xgboost computes it for approximate contributions), `roots`,
    `base_margin` and `depth`."""
    config = json.loads(booster.save_config())
    learner = config["learner"]
    if learner["objective"]["name"] != "binary:logistic":
        raise TrainingError(f"only binary:logistic boosters export, not {learner['objective']['name']}")
    base_score = float(str(learner["learner_model_param"]["base_score"]).strip("[]"))
    model = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]
    feature, threshold, left, right, missing, value, roots = [], [], [], [], [], [], []
    depth = 0
    for tree in model["trees"]:
        if any(tree["split_type"]) or tree["categories"]:
            raise TrainingError("categorical splits are not supported by the explainer")
        offset = len(feature)
        count = int(tree["tree_param"]["num_nodes"])
        lefts, rights = tree["left_children"], tree["right_children"]
        means, tree_depth = _node_means(lefts, rights, tree["split_conditions"], tree["sum_hessian"])
        depth = max(depth, tree_depth)
        conditions = tree["split_conditions"]
        roots.append(offset)
        for node in range(count):
            leaf = lefts[node] == -1
            feature.append(-1 if leaf else tree["split_indices"][node])
            threshold.append(0.0 if leaf else conditions[node])
            left.append(offset + (node if leaf else lefts[node]))
            right.append(offset + (node if leaf else rights[node]))
            missing.append(offset + (node if leaf else lefts[node] if tree["default_left"][node] else rights[node]))
            value.append(means[node])
    return {
        "feature": np.array(feature, dtype=np.int32),
        "threshold": np.array(threshold, dtype=np.float32),
        "left": np.array(left, dtype=np.int32),
        "right": np.array(right, dtype=np.int32),
        "missing": np.array(missing, dtype=np.int32),
        "value": np.array(value, dtype=np.float64),
        "roots": np.array(roots, dtype=np.int32),
        "base_margin": np.array(math.log(base_score / (1.0 - base_score)), dtype=np.float64),
        "depth": np.array(depth, dtype=np.int64),
    }


def _node_means(lefts, rights, conditions, cover) -> tuple[list[float], int]:
    """Each node's cover-weighted mean leaf value, and the tree's depth. XGBoost
    numbers a child after its parent, so one backward and one forward pass do."""
    count = len(lefts)
    if any(0 <= child <= node for node, child in enumerate(lefts)):
        raise TrainingError("unexpected node order in the booster's trees")
    means = [0.0] * count
    for node in range(count - 1, -1, -1):
        a, b = lefts[node], rights[node]
        if a == -1:
            means[node] = float(conditions[node])
        else:
            means[node] = (means[a] * cover[a] + means[b] * cover[b]) / (cover[a] + cover[b])
    levels = [0] * count
    for node in range(count):
        if lefts[node] != -1:
            levels[lefts[node]] = levels[rights[node]] = levels[node] + 1
    return means, max(levels)


def contributions_node(arrays: dict[str, np.ndarray], width: int, output: str = "contributions"):
    """An ai.onnx.ml TreeEnsembleRegressor with the booster's trees and splits whose
    leaves carry, per feature, the sum of the changes in expected value along the
    path to them: summed over trees, the tree-path contributions [N, width].
    Also returns the bias (base margin + every root's expected value)."""
    from onnx import helper

    feature, value = arrays["feature"], arrays["value"]
    left, right, missing, roots = arrays["left"], arrays["right"], arrays["missing"], arrays["roots"]
    nodes: dict[str, list] = {key: [] for key in (
        "treeids", "nodeids", "featureids", "values", "modes", "truenodeids", "falsenodeids",
        "missing_value_tracks_true")}
    targets: dict[str, list] = {key: [] for key in ("treeids", "nodeids", "ids", "weights")}
    for tree, root in enumerate(roots.tolist()):
        stack: list[tuple[int, dict[int, float]]] = [(root, {})]
        while stack:
            node, path = stack.pop()
            local = node - root
            leaf = feature[node] < 0
            nodes["treeids"].append(tree)
            nodes["nodeids"].append(local)
            nodes["featureids"].append(0 if leaf else int(feature[node]))
            nodes["values"].append(0.0 if leaf else float(arrays["threshold"][node]))
            nodes["modes"].append("LEAF" if leaf else "BRANCH_LT")
            nodes["truenodeids"].append(0 if leaf else int(left[node]) - root)
            nodes["falsenodeids"].append(0 if leaf else int(right[node]) - root)
            nodes["missing_value_tracks_true"].append(int(not leaf and missing[node] == left[node]))
            if leaf:
                for column, weight in sorted(path.items()):
                    targets["treeids"].append(tree)
                    targets["nodeids"].append(local)
                    targets["ids"].append(column)
                    targets["weights"].append(weight)
                continue
            column = int(feature[node])
            for child in (int(right[node]), int(left[node])):
                credited = dict(path)
                credited[column] = credited.get(column, 0.0) + float(value[child] - value[node])
                stack.append((child, credited))
    node = helper.make_node(
        "TreeEnsembleRegressor", ["features"], [output], domain="ai.onnx.ml", name="tree_path_contributions",
        **{f"nodes_{key}": values for key, values in nodes.items()},
        **{f"target_{key}": values for key, values in targets.items()},
        n_targets=width, aggregate_function="SUM", post_transform="NONE", base_values=[0.0] * width,
    )
    bias = float(arrays["base_margin"]) + float(value[roots].sum())
    return node, bias


# --- training ------------------------------------------------------------------------


def _classifier(params: dict, trees: int, positive_weight: float, config: TrainConfig, early: bool):
    import xgboost

    return xgboost.XGBClassifier(
        n_estimators=trees,
        objective="binary:logistic",
        tree_method="hist",
        subsample=0.8,
        colsample_bytree=0.8,
        reg_lambda=1.0,
        scale_pos_weight=positive_weight,
        eval_metric="logloss",
        early_stopping_rounds=config.early_stopping_rounds if early else None,
        random_state=config.seed,
        n_jobs=config.jobs,
        **params,
    )


def _margin(model, features: np.ndarray, trees: int | None = None) -> np.ndarray:
    import xgboost

    booster = model.get_booster()
    matrix = xgboost.DMatrix(features, missing=np.nan)
    return booster.predict(matrix, output_margin=True, iteration_range=(0, trees or 0)).astype(np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def cross_validate(features, labels, groups, config: TrainConfig, positive_weight: float, progress):
    """Grid search by grouped, stratified k-fold with early stopping. Returns a list of
    (params, mean AUC, median trees, out-of-fold margins), best first."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    splits = list(splitter.split(features, labels, groups))
    results = []
    for params in config.grid:
        oof = np.zeros(len(labels))
        aucs, trees = [], []
        for fit, held in splits:
            model = _classifier(params, config.max_trees, positive_weight, config, early=True)
            model.fit(features[fit], labels[fit], eval_set=[(features[held], labels[held])], verbose=False)
            best = int(model.best_iteration) + 1
            oof[held] = _margin(model, features[held], best)
            aucs.append(roc_auc_score(labels[held], oof[held]))
            trees.append(best)
            progress.update(1)
        results.append((params, float(np.mean(aucs)), int(statistics.median(trees)), oof, float(np.std(aucs))))
    results.sort(key=lambda r: -r[1])
    return results


def fit_platt(margins: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    platt = LogisticRegression(C=1e4, max_iter=1000).fit(margins.reshape(-1, 1), labels)
    return float(platt.coef_[0, 0]), float(platt.intercept_[0])


def logistic_baseline(train_x, train_y, test_x, spec: FeatureSpec, seed: int) -> np.ndarray:
    """Held-out probabilities of a logistic regression on the same features: numbers
    imputed (median, with missing indicators) and scaled, categories one-hot."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = [j for j, name in enumerate(spec.features) if spec.is_categorical(name)]
    numeric = [j for j in range(spec.width) if j not in categorical]
    columns = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                                    keep_empty_features=True), StandardScaler()), numeric),
            ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value=-1.0),
                                          OneHotEncoder(handle_unknown="ignore")), categorical),
        ]
    )
    pipeline = make_pipeline(columns, LogisticRegression(C=1.0, max_iter=3000, random_state=seed))
    pipeline.fit(train_x.astype(np.float64), train_y)
    return pipeline.predict_proba(test_x.astype(np.float64))[:, 1]


def onnx_export(model, width: int, path: Path) -> float:
    """Write the classifier as ONNX (onnxmltools) with the contributions output added;
    returns the contributions' bias."""
    import onnxmltools
    from onnx import TensorProto, checker, helper
    from onnxmltools.convert.common.data_types import FloatTensorType

    onnx_model = onnxmltools.convert_xgboost(
        model, initial_types=[("features", FloatTensorType([None, width]))], target_opset=TARGET_OPSET
    )
    node, bias = contributions_node(export_trees(model.get_booster()), width)
    onnx_model.graph.node.append(node)
    onnx_model.graph.output.append(helper.make_tensor_value_info("contributions", TensorProto.FLOAT, [None, width]))
    checker.check_model(onnx_model)
    path.write_bytes(onnx_model.SerializeToString())
    return bias


def load_embedder_dir(directory: str | Path):
    """The embedder (`server.engines.embedding.EmbedderModel`) of an artifact folder
    or a published version folder, at its default precision."""
    from server.engines.embedding import load_embedder
    from vectoros.core.manifest import Manifest, ManifestError

    try:
        manifest = Manifest.load(Path(directory))
        if manifest.kind != "embedder":
            raise TrainingError(f"{directory}: a {manifest.kind!r} artifact, not an embedder")
        return load_embedder(Path(directory), manifest)
    except (OSError, ManifestError) as exc:
        raise TrainingError(f"{directory}: not a usable embedder artifact ({exc})") from None


def embed_records(embedder, records: Sequence[DealRecord], batch_size: int = 256, progress=None) -> np.ndarray:
    """Unit vectors (float32 [len(records), dimension]) of the records' `deal_to_text`,
    each distinct text embedded once."""
    from vectoros.core.deal_text import deal_to_text

    texts = [deal_to_text(r) for r in records]
    distinct = list(dict.fromkeys(texts))
    vectors = np.empty((len(distinct), embedder.dimension), dtype=np.float32)
    for start in range(0, len(distinct), batch_size):
        vectors[start : start + batch_size] = embedder.embed(distinct[start : start + batch_size]).vectors
        if progress is not None:
            progress(min(start + batch_size, len(distinct)), len(distinct))
    row = {text: i for i, text in enumerate(distinct)}
    return vectors[[row[t] for t in texts]]


def similarity_columns(
    train_records: Sequence[DealRecord],
    test_records: Sequence[DealRecord],
    embedder,
    k: int = DEFAULT_K,
    progress=None,
) -> tuple[SimilaritySpec, np.ndarray, np.ndarray]:
    """The similarity spec and the two similarity features of the training and
    held-out rows ([n, 2] each; see the module docstring for who may be a
    neighbour of whom)."""
    from vectoros.core.deal_text import TEMPLATE_VERSION

    records = [*train_records, *test_records]
    vectors = embed_records(embedder, records, progress=progress)
    # Neighbours: each closed deal once, through its newest snapshot.
    newest: dict[str, int] = {}
    for i, record in enumerate(records):
        j = newest.get(record.deal_id)
        if j is None or (record.snapshot_at, i) > (records[j].snapshot_at, j):
            newest[record.deal_id] = i
    pool = sorted(newest.values())
    # A closed deal without a close date cannot be placed in time: never a neighbour.
    closed_at = np.array([r.closed_at.timestamp() if r.closed_at else math.inf for r in (records[j] for j in pool)])
    won = np.array([records[j].outcome is Outcome.WON for j in pool])
    ids = [records[j].deal_id for j in pool]
    workspaces = [records[j].workspace_id for j in pool]
    train_ids = {r.deal_id for r in train_records}
    in_train = np.array([deal_id in train_ids for deal_id in ids])

    def columns(rows: range, allowed: np.ndarray) -> np.ndarray:
        chosen = [pool[j] for j in np.flatnonzero(allowed)]
        return similarity_features(
            vectors[list(rows)],
            vectors[chosen],
            won[allowed],
            closed_at[allowed],
            np.array([records[i].snapshot_at.timestamp() for i in rows]),
            k,
            query_ids=[records[i].deal_id for i in rows],
            neighbour_ids=[ids[j] for j in np.flatnonzero(allowed)],
            query_workspaces=[records[i].workspace_id for i in rows],
            neighbour_workspaces=[workspaces[j] for j in np.flatnonzero(allowed)],
        )

    train = columns(range(len(train_records)), in_train)
    test = columns(range(len(train_records), len(records)), np.ones(len(pool), dtype=bool))
    spec = SimilaritySpec(
        k=k,
        template_version=TEMPLATE_VERSION,
        embedder_name=embedder.name,
        embedder_version=embedder.version,
        embedder_fingerprint=embedder.fingerprint,
    )
    return spec, train, test


def with_similarity(spec: FeatureSpec, similarity: SimilaritySpec | None, excluded: Sequence[str] = ()) -> FeatureSpec:
    """`spec` with the similarity features appended (those not in `excluded`)."""
    if similarity is None:
        return spec
    kept = tuple(name for name in SIMILARITY_FEATURES if name not in excluded)
    if not kept:
        return spec
    return replace(spec, features=spec.features + kept, similarity=similarity)


def train_scorer(
    data_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    overrides: SpecOverrides | None = None,
    *,
    embedder: str | Path | None = None,
    similar_k: int = DEFAULT_K,
) -> TrainResult:
    """Train, evaluate and export a scorer artifact into `out_dir` (created; must be
    empty). Raises TrainingError when the data cannot give a trustworthy model.
    `embedder` (an embedder artifact folder) adds the similarity features."""
    import onnxruntime as ort
    import xgboost
    from tqdm import tqdm

    from training import report
    from training.records import read_deals
    from vectoros.core.manifest import build_manifest

    config = config or TrainConfig()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise TrainingError(f"{out_dir}: not empty (the artifact must hold only its own files)")
    bar = tqdm(total=6 + config.folds * len(config.grid), desc="train scorer", unit="step",
               disable=not config.progress)
    embedder_model = load_embedder_dir(embedder) if embedder is not None else None

    data = read_deals(data_path, overrides)
    closed = list(data.closed)
    open_count = len(data.records) - len(closed)
    train_records, test_records = time_split(closed, config.test_fraction)
    train_y, test_y = labels_of(train_records), labels_of(test_records)
    for name, y in (("training", train_y), ("held-out", test_y)):
        if len(y) < 20 or y.min() == y.max():
            raise TrainingError(f"the {name} set needs at least 20 closed deals with both outcomes (has {len(y)})")
    similarity, train_similar, test_similar = None, None, None
    if embedder_model is not None:
        bar.set_postfix_str("similar deals")
        similarity, train_similar, test_similar = similarity_columns(
            train_records, test_records, embedder_model, similar_k,
            progress=lambda done, total: bar.set_postfix_str(f"embedding {done}/{total}"),
        )
    bar.set_postfix_str("features")

    overrides = overrides or SpecOverrides()
    spec = with_similarity(fit_feature_spec(train_records, overrides, custom_dates=data.custom_dates), similarity)
    train_x = featurize(train_records, spec, similar=train_similar)
    groups = [r.deal_id for r in train_records]
    screen = leakage_screen(train_x, train_y, groups, spec, config.seed)
    suspects = {name: auc for name, auc in screen.items() if auc >= config.leakage_auc}
    if suspects:
        excluded = {**spec.excluded}
        spec = fit_feature_spec(
            train_records, replace(overrides, exclude=overrides.exclude + tuple(suspects)),
            custom_dates=data.custom_dates,
        )
        excluded.update(spec.excluded)
        for name, auc in suspects.items():
            excluded[name] = f"suspected leakage: alone it separates won from lost with AUC {auc:.3f}"
        spec = with_similarity(replace(spec, excluded=dict(sorted(excluded.items()))), similarity, tuple(suspects))
        train_x = featurize(train_records, spec, similar=train_similar)
    test_x = featurize(test_records, spec, similar=test_similar)
    bar.update(1)

    positive_weight = float((train_y == 0).sum() / max(1, (train_y == 1).sum()))
    bar.set_postfix_str("cross-validation")
    cv = cross_validate(train_x, train_y, groups, config, positive_weight, bar)
    best_params, cv_auc, best_trees, oof_margins, cv_std = cv[0]
    slope, intercept = fit_platt(oof_margins, train_y)

    bar.set_postfix_str("final model")
    model = _classifier(best_params, best_trees, positive_weight, config, early=False)
    model.fit(train_x, train_y, verbose=False)
    test_margin = _margin(model, test_x)
    probabilities = _sigmoid(slope * test_margin + intercept)
    uncalibrated = _sigmoid(test_margin)
    metrics = classification_metrics(test_y, probabilities)
    if metrics["roc_auc"] >= 0.995 and not config.allow_perfect:
        raise TrainingError(
            f"held-out ROC AUC is {metrics['roc_auc']:.4f}: a win/loss model this perfect almost surely reads "
            "the outcome (target leakage). Check columns filled after the snapshot and exclude them in a "
            "feature spec; allow_perfect accepts it."
        )
    baseline_p = logistic_baseline(train_x, train_y, test_x, spec, config.seed)
    baseline = classification_metrics(test_y, baseline_p)
    bar.update(1)

    bar.set_postfix_str("export")
    out_dir.mkdir(parents=True, exist_ok=True)
    bias = onnx_export(model, spec.width, out_dir / MODEL_FILE)
    session = ort.InferenceSession(str(out_dir / MODEL_FILE), providers=["CPUExecutionProvider"])
    onnx_p, contributions = session.run(["probabilities", "contributions"], {"features": test_x})
    onnx_p = onnx_p[:, 1]
    native_p = model.predict_proba(test_x)[:, 1]
    native_contribs = model.get_booster().predict(
        xgboost.DMatrix(test_x, missing=np.nan), pred_contribs=True, approx_contribs=True
    )
    parity = {
        "onnx_parity_max_abs_diff": float(np.abs(onnx_p - native_p).max()),
        "contrib_parity_max_abs_diff": float(np.abs(contributions - native_contribs[:, :-1]).max()),
        "contrib_margin_max_abs_diff": float(
            np.abs(bias + contributions.astype(np.float64).sum(axis=1) - test_margin).max()
        ),
    }
    for name, value in parity.items():
        if not value <= PARITY_LIMIT:
            raise TrainingError(f"{name} is {value:.3g} (limit {PARITY_LIMIT}): the export is not faithful")
    bar.update(1)

    uncalibrated_metrics = classification_metrics(test_y, uncalibrated)
    all_metrics = {
        **metrics,
        "cv_roc_auc": cv_auc,
        "cv_roc_auc_std": cv_std,
        "uncalibrated_brier": uncalibrated_metrics["brier"],
        "uncalibrated_ece": uncalibrated_metrics["ece"],
        **{f"baseline_lr_{k}": v for k, v in baseline.items()},
        **parity,
        "train_rows": float(len(train_records)),
        "test_rows": float(len(test_records)),
        "train_win_rate": float(train_y.mean()),
        "test_win_rate": float(test_y.mean()),
        "trees": float(best_trees),
    }

    cutoff = min(r.created_at for r in test_records if r.created_at is not None)
    description = (
        f"{Path(data_path).name}: {len(closed)} closed deal snapshots ({int(train_y.sum() + test_y.sum())} won), "
        f"{open_count} open skipped; trained on deals created before {cutoff.date().isoformat()}, "
        f"held out {len(test_records)} newer"
    )
    importance = model.get_booster().get_score(importance_type="total_gain")
    gains = {spec.features[int(k[1:])]: float(v) for k, v in importance.items()}
    report.write_report(
        out_dir / REPORT_FILE,
        report.ReportData(
            title=f"Win/loss scorer trained on {Path(data_path).name}",
            description=description,
            metrics=metrics,
            baseline=baseline,
            uncalibrated=uncalibrated_metrics,
            labels=test_y,
            probabilities=probabilities,
            uncalibrated_probabilities=uncalibrated,
            baseline_probabilities=baseline_p,
            gains=gains,
            mean_abs_contributions=dict(zip(spec.features, np.abs(contributions).mean(axis=0).tolist(), strict=True)),
            cv=[(p, auc, trees, std) for p, auc, trees, _, std in cv],
            screen=screen,
            excluded=dict(spec.excluded),
            parity=parity,
            calibration=(slope, intercept),
            params={**best_params, "n_estimators": best_trees, "scale_pos_weight": round(positive_weight, 4)},
            features=spec.features,
        ),
    )

    medians = np.nanmedian(np.where(np.isnan(train_x).all(axis=0), 0.0, train_x), axis=0)
    golden = test_x[: config.golden_rows].copy()
    # JSON has no NaN: golden rows take the training median where a value is missing.
    golden = np.where(np.isnan(golden), medians, golden).astype(np.float32)
    manifest = build_manifest(
        out_dir,
        name="scorer",
        kind="scorer",
        metrics=all_metrics,
        training_data={"sha256": data.sha256, "rows": len(data.records), "description": description},
        spec={
            "features": spec.to_dict(),
            "calibration": {"method": "platt", "slope": slope, "intercept": intercept},
            "risk": {"high_risk_below": config.high_risk_below, "low_risk_from": config.low_risk_from},
            "model_file": MODEL_FILE,
            "bias": bias,
        },
        golden_inputs={MODEL_FILE: {"features": golden}},
        atol=1e-5,
    )
    manifest.write(out_dir)
    bar.update(1)
    bar.close()
    return TrainResult(
        out_dir=out_dir,
        manifest=manifest,
        metrics=all_metrics,
        spec=spec,
        params={**best_params, "n_estimators": best_trees, "scale_pos_weight": positive_weight},
        model=model,
        test_features=test_x,
        test_labels=test_y,
    )


# --- command line --------------------------------------------------------------------


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
