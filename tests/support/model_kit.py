"""Helpers for the model repository tests: tiny real ONNX artifacts (y = sigmoid(x @ w), x: [N, 3] float32)
written with onnx.helper and described by a manifest built through the API."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from vectoros.core.manifest import Manifest, build_manifest

GOLDEN_X = np.array([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0], [-2.0, 0.0, 0.25]], dtype=np.float32)


def weights_for(seed: int) -> np.ndarray:
    """A different weight vector per seed, so that versions give different outputs."""
    return np.random.default_rng(seed).normal(size=(3, 1)).astype(np.float32)


def expected_scores(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ weights.astype(np.float64))))


def write_onnx(path: Path, weights: np.ndarray) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["margin"]),
            helper.make_node("Sigmoid", ["margin"], ["y"]),
        ],
        "tiny_scorer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(weights, name="w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_artifact(
    directory: Path,
    *,
    seed: int = 1,
    name: str = "scorer",
    kind: str = "scorer",
    metrics: dict[str, float] | None = None,
) -> Manifest:
    """Write an artifact (model.onnx, a small extra file, manifest.json with
    version null) into `directory` and return its manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = weights_for(seed)
    write_onnx(directory / "model.onnx", weights)
    (directory / "feature_spec.txt").write_text("x0,x1,x2\n")
    manifest = build_manifest(
        directory,
        name=name,
        kind=kind,
        metrics=metrics if metrics is not None else {"roc_auc": 0.80, "brier": 0.20},
        training_data={
            "sha256": hashlib.sha256(f"data-{seed}".encode()).hexdigest(),
            "rows": 1000,
            "description": f"synthetic seed {seed}",
        },
        spec={"features": ["x0", "x1", "x2"], "seed": seed},
        golden_inputs={"model.onnx": {"x": GOLDEN_X}},
        atol=1e-6,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    # The golden outputs came from onnxruntime; hold them against NumPy so that
    # the fixture itself is known to be right.
    produced = np.asarray(manifest.golden["model.onnx"]["outputs"]["y"])
    np.testing.assert_allclose(produced, expected_scores(GOLDEN_X, weights), atol=1e-6)
    manifest.write(directory)
    return manifest


class TinyScorer:
    """What a real loader builds: one onnxruntime session with cached names."""

    def __init__(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x.astype(np.float32)})[0]


def load_tiny_scorer(path: Path, manifest: Manifest) -> TinyScorer:
    if manifest.spec.get("features") != ["x0", "x1", "x2"]:
        raise ValueError("spec.features: unexpected")
    return TinyScorer(path / "model.onnx")


