"""The embedder artifact: a real export of all-MiniLM-L6-v2, checked against
sentence-transformers. The export is cached (training.embedder.cached_export,
under $VECTOROS_TEST_CACHE or /tmp/vectoros-test-cache): ~40 s cold, instant warm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from server.models.publish import publish
from server.models.repository import ModelRepository
from training import embedder
from vectoros.core.manifest import Manifest, run_golden, verify_files

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)


@pytest.fixture(scope="module")
def artifact() -> Path:
    return embedder.cached_export()


@pytest.fixture(scope="module")
def manifest(artifact) -> Manifest:
    return Manifest.load(artifact)


def test_manifest_is_strict_format_1_named_embedder(manifest, artifact):
    assert (manifest.format, manifest.name, manifest.kind, manifest.version) == (1, "embedder", "embedder", None)
    assert set(manifest.files) == {"model_fp32.onnx", "model_int8.onnx", "tokenizer.json"}
    verify_files(artifact, manifest)
    run_golden(artifact, manifest)  # what `vectoros publish` and the registry run
    for filename in manifest.onnx_files:
        signature = manifest.signature[filename]
        assert [(t["name"], t["dtype"]) for t in signature["inputs"]] == [
            ("input_ids", "int64"),
            ("attention_mask", "int64"),
        ]
        assert signature["outputs"] == [{"name": "sentence_embedding", "dtype": "float32", "shape": [None, 384]}]


def test_fidelity_meets_the_issue_targets(manifest):
    metrics = manifest.metrics
    assert metrics["fp32_cosine_mean"] >= 0.9999
    assert metrics["int8_cosine_mean"] >= 0.99
    assert metrics["int8_recall_at_10"] >= 0.9
    for precision in ("fp32", "int8"):
        assert metrics[f"{precision}_cosine_min"] <= metrics[f"{precision}_cosine_mean"] <= 1.0 + 1e-6
    assert manifest.training_data["rows"] == embedder.FIDELITY_TEXTS
    assert manifest.training_data["sha256"] == embedder.texts_sha256(embedder.fidelity_texts())


def test_default_precision_meets_its_bar_and_is_the_fastest_that_does(manifest):
    spec = manifest.spec
    default = spec["default_precision"]
    passing = [p for p, entry in spec["precisions"].items() if entry["meets_bar"]]
    assert default in passing
    assert manifest.metrics[f"{default}_texts_per_second"] == max(
        manifest.metrics[f"{p}_texts_per_second"] for p in passing
    )
    # The primary metrics are the served precision's.
    for name in ("cosine_mean", "cosine_min", "recall_at_10"):
        assert manifest.metrics[name] == manifest.metrics[f"{default}_{name}"]
    for precision, entry in spec["precisions"].items():
        figures = {name: manifest.metrics[f"{precision}_{name}"] for name in entry["bar"]}
        assert entry["meets_bar"] == all(figures[name] >= bar for name, bar in entry["bar"].items())


def test_tokenizer_truncates_at_256_and_does_not_pad(artifact):
    saved = json.loads((artifact / "tokenizer.json").read_text())
    assert saved["truncation"]["max_length"] == 256
    assert saved["padding"] is None


def test_fp32_graph_matches_sentence_transformers_on_padded_and_truncated_inputs(artifact):
    # Straight onnxruntime on the exported file (no engine code): one batch that
    # mixes an empty text, a short one and one cut at 256 tokens, so padding and
    # the mask inside the graph are exercised.
    from tokenizers import Tokenizer

    texts = ["", "Pilot for Globex in emea", embedder.deal_like_texts(1, seed=3, min_words=400, max_words=400)[0]]
    tokenizer = Tokenizer.from_file(str(artifact / "tokenizer.json"))
    encodings = tokenizer.encode_batch(texts)
    assert [len(e.ids) for e in encodings][2] == 256
    length = max(len(e.ids) for e in encodings)
    ids = np.zeros((3, length), np.int64)
    mask = np.zeros((3, length), np.int64)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    session = ort.InferenceSession(str(artifact / "model_fp32.onnx"), providers=["CPUExecutionProvider"])
    (vectors,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    reference = embedder.cached_reference(texts)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.cosine_per_row(vectors, reference).min() > 0.9999


def test_int8_graph_is_smaller_and_quantized(artifact):
    import onnx

    model = onnx.load(str(artifact / "model_int8.onnx"), load_external_data=False)
    ops = [node.op_type for node in model.graph.node]
    # Every weight MatMul is int8 (per-token activation scales); only the two
    # attention products (activation x activation) per layer stay float.
    assert ops.count("MatMulIntegerToFloat") == 36
    assert ops.count("MatMul") == 12
    assert (artifact / "model_int8.onnx").stat().st_size < (artifact / "model_fp32.onnx").stat().st_size


def test_publishes_into_the_repository(artifact, tmp_path):
    result = publish(artifact, tmp_path / "models")
    assert result.version == 1
    assert ModelRepository(tmp_path / "models").manifest("embedder", 1).version == 1


def test_fidelity_texts_are_fixed_and_exercise_truncation(artifact):
    from tokenizers import Tokenizer

    texts = embedder.fidelity_texts()
    assert texts == embedder.fidelity_texts()
    assert len(texts) == embedder.FIDELITY_TEXTS and "" in texts
    tokenizer = Tokenizer.from_file(str(artifact / "tokenizer.json"))
    cut = [bool(e.overflowing) for e in tokenizer.encode_batch(texts)]
    assert 10 <= sum(cut) <= 40


def test_deal_like_texts_are_deterministic_and_in_range():
    texts = embedder.deal_like_texts(50, seed=9, min_words=20, max_words=120)
    assert texts == embedder.deal_like_texts(50, seed=9, min_words=20, max_words=120)
    assert texts != embedder.deal_like_texts(50, seed=10, min_words=20, max_words=120)
    assert all(20 <= len(text.split()) <= 120 for text in texts)


def test_recall_at_k_is_one_for_identical_vectors_and_drops_for_noise():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(60, 16))
    assert embedder.recall_at_k(vectors, vectors, 10) == 1.0
    noisy = vectors + rng.normal(scale=1.0, size=vectors.shape)
    assert embedder.recall_at_k(noisy, vectors, 10) < 0.9
