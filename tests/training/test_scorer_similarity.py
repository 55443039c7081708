"""`vectoros train scorer --embedder`: the similarity features with the real ONNX
embedder (exported once per machine by `training.embedder.cached_export`)."""

import argparse
import math
from dataclasses import replace

import numpy as np
import pytest

from server.engines.scoring import load_scorer
from training import embedder as embedder_export
from training import scorer as scorer_module
from training.records import read_deals, write_deals
from training.scorer import load_embedder_dir, time_split
from training.synth import DATE_COLUMNS, synth_deals
from vectoros.cli.train import add_parser
from vectoros.core.deal_text import TEMPLATE_VERSION, deal_to_text
from vectoros.core.deals import Outcome
from vectoros.core.manifest import Manifest, run_golden
from vectoros.core.similar_features import SIMILARITY_FEATURES, features_from_matches

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """600 synthetic deals in two workspaces, trained through the command line."""
    folder = tmp_path_factory.mktemp("similar")
    records = synth_deals(600, seed=5)
    records = [replace(r, workspace_id=("ws-a", "ws-b")[i % 2]) for i, r in enumerate(records)]
    data = write_deals(records, folder / "deals.csv", custom_dates=DATE_COLUMNS)
    embedder_dir = embedder_export.cached_export()
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args([
        "train", "scorer", "--data", str(data), "--out", str(folder / "artifact"), "--embedder", str(embedder_dir),
        "--similar-k", "5", "--grid", "small", "--folds", "3", "--quiet",
    ])
    assert args.func(args) == 0
    return folder / "artifact", data, embedder_dir


def test_artifact_has_the_similarity_features(trained):
    out, _, embedder_dir = trained
    manifest = Manifest.load(out)
    run_golden(out, manifest)
    model = load_scorer(out, manifest)
    assert model.spec.features[-2:] == SIMILARITY_FEATURES
    similarity = model.similarity
    embedder = load_embedder_dir(embedder_dir)
    assert (similarity.k, similarity.template_version) == (5, TEMPLATE_VERSION)
    assert similarity.embedder_fingerprint == embedder.fingerprint
    assert manifest.spec["features"]["similarity"]["embedder_fingerprint"] == embedder.fingerprint


def test_training_rows_see_only_earlier_training_deals_of_their_workspace(trained):
    """Recompute the features of a few rows by brute force from the definition and
    compare with what training computed."""
    _, data_path, embedder_dir = trained
    data = read_deals(data_path)
    train, test = time_split(list(data.closed), 0.2)
    embedder = load_embedder_dir(embedder_dir)
    spec, train_similar, test_similar = scorer_module.similarity_columns(train, test, embedder, 5)
    everyone = [*train, *test]
    vectors = embedder.embed([deal_to_text(r) for r in everyone]).vectors
    train_ids = {r.deal_id for r in train}

    def by_definition(i: int, pool_ids: set[str]) -> tuple[float, float]:
        query = everyone[i]
        candidates = [
            (float(np.clip(vectors[i] @ vectors[j], -1, 1)), other.outcome is Outcome.WON)
            for j, other in enumerate(everyone)
            if other.deal_id in pool_ids and other.deal_id != query.deal_id
            and other.workspace_id == query.workspace_id and other.closed_at < query.snapshot_at
        ]
        return features_from_matches(sorted(candidates, reverse=True)[:5])

    checked = 0
    for i in range(0, len(train), 37):
        np.testing.assert_allclose(train_similar[i], by_definition(i, train_ids), atol=1e-5)
        checked += not math.isnan(train_similar[i, 0])
    all_ids = {r.deal_id for r in everyone}
    for t in range(0, len(test), 11):
        np.testing.assert_allclose(test_similar[t], by_definition(len(train) + t, all_ids), atol=1e-5)
        checked += not math.isnan(test_similar[t, 0])
    assert checked >= 10
    # The oldest deal has nothing closed before it: unknown, not zero.
    first = min(range(len(train)), key=lambda i: train[i].snapshot_at)
    assert np.isnan(train_similar[first]).all()
    assert spec.k == 5
