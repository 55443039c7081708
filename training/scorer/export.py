"""The scorer as ONNX: onnxmltools' conversion of the classifier (outputs `label`
and `probabilities`) with the `contributions` output added (`contributions.py`),
and the parity of that graph with xgboost on the held-out rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.scorer.config import TrainingError
from training.scorer.contributions import contributions_node, export_trees

TARGET_OPSET = 15  # the highest onnxmltools converts XGBoost to (docs: MEASURED.md)
PARITY_LIMIT = 1e-4


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


def check_parity(path: Path, model, features: np.ndarray, margins: np.ndarray, bias: float):
    """The graph at `path` against xgboost on `features` (whose margins are `margins`):
    the largest difference of the probabilities, of the contributions, and of
    bias + contributions from the margins. Raises TrainingError when one exceeds
    PARITY_LIMIT. Returns (the three by metric name, the graph's contributions)."""
    import onnxruntime as ort
    import xgboost

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_p, contributions = session.run(["probabilities", "contributions"], {"features": features})
    onnx_p = onnx_p[:, 1]
    native_p = model.predict_proba(features)[:, 1]
    native_contribs = model.get_booster().predict(
        xgboost.DMatrix(features, missing=np.nan), pred_contribs=True, approx_contribs=True
    )
    parity = {
        "onnx_parity_max_abs_diff": float(np.abs(onnx_p - native_p).max()),
        "contrib_parity_max_abs_diff": float(np.abs(contributions - native_contribs[:, :-1]).max()),
        "contrib_margin_max_abs_diff": float(
            np.abs(bias + contributions.astype(np.float64).sum(axis=1) - margins).max()
        ),
    }
    for name, value in parity.items():
        if not value <= PARITY_LIMIT:
            raise TrainingError(f"{name} is {value:.3g} (limit {PARITY_LIMIT}): the export is not faithful")
    return parity, contributions
