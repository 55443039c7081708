import math
from dataclasses import replace

import numpy as np
import pytest

from server.engines.similarity import Match, summarize
from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.features import FeatureSpec, featurize, fit_feature_spec
from vectoros.core.similar_features import (
    SIMILARITY_FEATURES,
    SimilaritySpec,
    features_from_matches,
    similarity_features,
)

SIMILARITY = SimilaritySpec(
    k=3, template_version="deal-text-v1", embedder_name="embedder", embedder_version=None,
    embedder_fingerprint="ab" * 32,
)


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_neither_own_outcome_nor_later_deals_are_read():
    query = unit(1, 0, 0)
    # The deal itself (an older snapshot of it, won) and a deal closed after the
    # snapshot (won, nearly identical): both would push the win rate up.
    own = unit(1, 0, 0)
    later = unit(1, 0.05, 0)
    earlier = [unit(1, 0.5, 0), unit(1, 0.8, 0), unit(1, 1.2, 0.3), unit(0, 1, 0)]
    vectors = np.stack([own, later, *earlier])
    won = np.array([True, True, False, True, False, False])
    closed_at = np.array([50.0, 200.0, 10.0, 20.0, 30.0, 40.0])
    ids = ["d0", "d1", "d2", "d3", "d4", "d5"]
    as_of = np.array([100.0])

    got = similarity_features(query[None], vectors, won, closed_at, as_of, 3, query_ids=["d0"], neighbour_ids=ids)

    # By hand: the three most similar of d2..d5 are d2, d3, d4.
    scores = [float(query @ v) for v in earlier[:3]]
    expected_rate = scores[1] / sum(scores)
    assert got[0, 0] == pytest.approx(expected_rate)
    assert got[0, 1] == pytest.approx(np.mean(scores))
    # Reading the own outcome or the later deal would have changed both values.
    leaky = similarity_features(query[None], vectors, won, closed_at, np.array([1e9]), 3)
    assert leaky[0, 0] > got[0, 0] + 0.3 and leaky[0, 1] > got[0, 1]
    # A deal closed exactly at the snapshot is not "before" it.
    at_snapshot = similarity_features(
        query[None], vectors, won, closed_at, np.array([10.0]), 3, query_ids=["d0"], neighbour_ids=ids
    )
    assert np.isnan(at_snapshot).all()


def test_only_the_same_workspace_counts():
    queries = np.stack([unit(1, 0), unit(0, 1)])
    pool = np.stack([unit(1, 0.1), unit(0.1, 1)])
    got = similarity_features(
        queries, pool, np.array([True, False]), np.array([0.0, 0.0]), np.array([5.0, 5.0]), 10,
        query_workspaces=["a", "c"], neighbour_workspaces=["a", "b"],
    )
    assert got[0, 0] == 1.0 and got[0, 1] == pytest.approx(float(queries[0] @ pool[0]))
    assert np.isnan(got[1]).all()  # workspace "c" has no closed deals


def test_blocks_and_k_larger_than_the_pool_agree_with_a_plain_loop():
    rng = np.random.default_rng(3)
    queries = rng.normal(size=(1500, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    pool = queries[:40]
    won = rng.random(40) < 0.4
    closed_at = rng.uniform(0, 100, 40)
    as_of = rng.uniform(0, 100, 1500)
    ids = [f"d{i}" for i in range(1500)]
    got = similarity_features(queries, pool, won, closed_at, as_of, 5, query_ids=ids, neighbour_ids=ids[:40])
    for i in (0, 7, 39, 1024, 1499):
        allowed = [j for j in range(40) if closed_at[j] < as_of[i] and j != i]
        ranked = sorted(allowed, key=lambda j: -float(queries[i] @ pool[j]))[:5]
        rate, mean = features_from_matches([(float(queries[i] @ pool[j]), bool(won[j])) for j in ranked])
        np.testing.assert_allclose(got[i], [rate, mean], rtol=1e-5, equal_nan=True)


def test_serving_helper_matches_the_similarity_summary():
    def match(score: float, outcome: Outcome) -> Match:
        return Match(score=score, deal=DealRecord(deal_id=f"d{score}", outcome=outcome))

    matches = [match(0.9, Outcome.WON), match(0.7, Outcome.LOST), match(0.4, Outcome.LOST), match(-0.2, Outcome.WON)]
    summary = summarize(matches)
    rate, mean = features_from_matches([(m.score, m.deal.outcome is Outcome.WON) for m in matches])
    assert rate == pytest.approx(summary.weighted_win_rate) and mean == pytest.approx(summary.mean_score)
    # Every similarity <= 0: the plain rate.
    assert features_from_matches([(-0.1, True), (-0.3, False)])[0] == 0.5
    assert all(math.isnan(v) for v in features_from_matches([]))


def _records() -> list[DealRecord]:
    from tests.engines.test_features import deal

    return [deal(i) for i in range(30)]


def test_spec_with_similarity_round_trips_and_older_specs_still_load():
    records = _records()
    plain = fit_feature_spec(records)
    old = plain.to_dict()
    assert "similarity" not in old and FeatureSpec.from_dict(old) == plain
    spec = replace(plain, features=plain.features + SIMILARITY_FEATURES, similarity=SIMILARITY)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    bad = spec.to_dict()
    bad["similarity"] = {**SIMILARITY.to_dict(), "extra": 1}
    with pytest.raises(ValueError, match="similarity.extra: unknown key"):
        FeatureSpec.from_dict(bad)
    with pytest.raises(ValueError, match="unknown feature 'similar_win_rate'"):
        replace(plain, features=plain.features + SIMILARITY_FEATURES)

    similar = np.array([[0.25 * (i % 4), 0.5] for i in range(len(records))])
    matrix = featurize(records, spec, similar=similar)
    np.testing.assert_array_equal(matrix[:, :plain.width], featurize(records, plain))
    np.testing.assert_allclose(matrix[:, -2:], similar)
    assert np.isnan(featurize(records, spec)[:, -2:]).all()
    with pytest.raises(ValueError, match="similar: shape"):
        featurize(records, spec, similar=similar[:3])
