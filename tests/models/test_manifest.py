import json

import numpy as np
import pytest

from tests.support.model_kit import GOLDEN_X, weights_for, write_onnx
from vectoros.core.manifest import (
    Manifest,
    ManifestError,
    file_checksums,
    metric_direction,
    run_golden,
    verify_files,
)


def manifest_dict(directory):
    return json.loads((directory / "manifest.json").read_text())


def test_roundtrip_and_golden_pass(artifact):
    directory = artifact(seed=3)
    manifest = Manifest.load(directory)
    assert manifest.name == "scorer" and manifest.version is None and manifest.kind == "scorer"
    assert Manifest.loads(manifest.to_json()) == manifest
    assert set(manifest.files) == {"feature_spec.txt", "model.onnx"}
    assert manifest.signature["model.onnx"]["inputs"] == [
        {"name": "x", "dtype": "float32", "shape": [None, 3]}
    ]
    assert manifest.onnx_files == ("model.onnx",)
    verify_files(directory, manifest)
    run_golden(directory, manifest)


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda d: d.update(extra=1), "extra: unknown key"),
        (lambda d: d.pop("training_data"), "training_data: missing key"),
        (lambda d: d.update(version="3"), "version: must be null or a positive integer"),
        (lambda d: d.update(version=True), "version: must be null or a positive integer"),
        (lambda d: d.update(kind="ranker"), "kind: must be one of"),
        (lambda d: d.update(created_at="2026-01-02T03:04:05"), "created_at: must be in UTC"),
        (lambda d: d["metrics"].update(roc_auc="high"), "metrics.roc_auc: must be a finite number"),
        (lambda d: d["files"]["model.onnx"].update(md5="x"), "files.model.onnx.md5: unknown key"),
        (lambda d: d["files"]["model.onnx"].pop("bytes"), "files.model.onnx.bytes: missing key"),
        (lambda d: d["files"].update({"../x": d["files"]["model.onnx"]}), "files.../x: must be a relative"),
        (lambda d: d["training_data"].update(rows=1.5), "training_data.rows: must be an integer"),
        (lambda d: d["golden"].pop("model.onnx"), "golden.model.onnx: missing key"),
        (lambda d: d["signature"]["model.onnx"]["inputs"][0].update(dtype="float"), "inputs[0].dtype"),
        (lambda d: d["golden"]["model.onnx"].update(atol=-1), "golden.model.onnx.atol"),
        (lambda d: d.update(spec=[]), "spec: must be an object"),
        (lambda d: d.update(format=2), "format: must be 1"),
    ],
)
def test_strict_manifest_names_the_key(artifact, change, key):
    directory = artifact()
    data = manifest_dict(directory)
    change(data)
    (directory / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as error:
        Manifest.load(directory)
    assert key in error.value.message
    assert str(directory) in error.value.message


def test_not_json_and_nan_refused(artifact):
    directory = artifact()
    (directory / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.load(directory)
    data = manifest_dict(artifact())
    text = json.dumps(data).replace('"roc_auc": 0.8', '"roc_auc": NaN')
    with pytest.raises(ManifestError, match="NaN"):
        Manifest.loads(text)


def test_file_checksums_lists_every_file_but_the_manifest(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.bin").write_bytes(b"\x00" * 10)
    (tmp_path / "sub" / "a.txt").write_text("hello")
    (tmp_path / "manifest.json").write_text("{}")
    sums = file_checksums(tmp_path)
    assert list(sums) == ["b.bin", "sub/a.txt"]
    assert sums["sub/a.txt"] == {
        "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "bytes": 5,
    }


def test_verify_files_catches_tamper_missing_extra(artifact):
    directory = artifact()
    manifest = Manifest.load(directory)

    (directory / "stray.txt").write_text("x")
    with pytest.raises(ManifestError, match="files.stray.txt: not listed"):
        verify_files(directory, manifest)
    (directory / "stray.txt").unlink()

    spec = directory / "feature_spec.txt"
    original = spec.read_bytes()
    spec.write_bytes(original.replace(b"x0", b"y0"))  # same size, other bytes
    with pytest.raises(ManifestError, match="files.feature_spec.txt: SHA-256 does not match"):
        verify_files(directory, manifest)
    spec.write_bytes(original + b"\n")
    with pytest.raises(ManifestError, match="files.feature_spec.txt: size"):
        verify_files(directory, manifest)
    spec.unlink()
    with pytest.raises(ManifestError, match="files.feature_spec.txt: missing"):
        verify_files(directory, manifest)


def test_golden_mismatch_is_refused(artifact):
    directory = artifact(seed=1)
    manifest = Manifest.load(directory)
    # Another model with the same signature but other weights: checksums updated,
    # golden outputs left from the first model.
    write_onnx(directory / "model.onnx", weights_for(2))
    data = manifest.to_dict()
    data["files"] = file_checksums(directory)
    tampered = Manifest.from_dict(data)
    verify_files(directory, tampered)
    with pytest.raises(ManifestError, match=r"golden.model.onnx.outputs.y: differs .* by"):
        run_golden(directory, tampered)


def test_golden_shape_and_signature_checked(artifact):
    directory = artifact()
    data = Manifest.load(directory).to_dict()
    data["golden"]["model.onnx"]["outputs"]["y"] = data["golden"]["model.onnx"]["outputs"]["y"][:2]
    with pytest.raises(ManifestError, match="shape"):
        run_golden(directory, Manifest.from_dict(data))

    data = Manifest.load(directory).to_dict()
    data["signature"]["model.onnx"]["inputs"][0]["shape"] = [None, 4]
    with pytest.raises(ManifestError, match="signature.model.onnx.inputs"):
        run_golden(directory, Manifest.from_dict(data))

    data = Manifest.load(directory).to_dict()
    data["golden"]["model.onnx"]["inputs"] = {"z": {"dtype": "float32", "data": GOLDEN_X.tolist()}}
    with pytest.raises(ManifestError, match="must feed exactly"):
        run_golden(directory, Manifest.from_dict(data))


def test_unloadable_onnx_is_refused(artifact):
    directory = artifact()
    (directory / "model.onnx").write_bytes(b"not a model")
    data = Manifest.load(directory).to_dict()
    data["files"] = file_checksums(directory)
    with pytest.raises(ManifestError, match="onnxruntime cannot load"):
        run_golden(directory, Manifest.from_dict(data))


def test_metric_direction():
    assert metric_direction("roc_auc") == "higher"
    assert metric_direction("cosine_mean") == "higher"
    assert metric_direction("recall_at_10") == "higher"
    assert metric_direction("brier") == "lower"
    assert metric_direction("log_loss") == "lower"
    assert metric_direction("ece") == "lower"
    assert metric_direction("rows_seen") is None


def test_golden_allows_int_inputs(tmp_path):
    # Embedders take int64 token ids: the golden path must feed ints unchanged.
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["out"], to=TensorProto.FLOAT)],
        "cast",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None, None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "model.onnx"))
    from vectoros.core.manifest import build_manifest

    ids = np.array([[101, 2023, 102]], dtype=np.int64)
    manifest = build_manifest(
        tmp_path, name="embedder", kind="embedder", metrics={"cosine_mean": 0.99},
        training_data={"sha256": "0" * 64, "rows": 0, "description": ""},
        spec={}, golden_inputs={"model.onnx": {"ids": ids}},
    )
    assert manifest.golden["model.onnx"]["inputs"]["ids"]["dtype"] == "int64"
    assert manifest.golden["model.onnx"]["outputs"]["out"] == [[101.0, 2023.0, 102.0]]
    run_golden(tmp_path, manifest)
