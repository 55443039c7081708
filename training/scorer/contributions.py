"""Tree-path contributions as a second ONNX tree ensemble: the booster's trees and
splits again, whose leaves carry per feature the change in expected value along
the path to them (xgboost's approximate contributions; `server.engines.scoring`
reads the output). `export_trees` flattens the booster, `contributions_node`
builds the ensemble."""

from __future__ import annotations

import json
import math

import numpy as np

from training.scorer.config import TrainingError


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
