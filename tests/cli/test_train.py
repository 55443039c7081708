"""`vectoros synth` and `vectoros train scorer|embedder`: arguments in, artifacts
and a summary out."""

from __future__ import annotations

import argparse
import json

import pytest

from training.examples.crm_opportunities import write_csv as write_crm
from training.records import read_deals
from vectoros.cli.train import add_parser
from vectoros.core.deals import Outcome
from vectoros.core.manifest import Manifest

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser()
    add_parser(made.add_subparsers(dest="command"))
    return made


def test_synth_writes_the_deals_it_counts(tmp_path, capsys):
    args = parser().parse_args(["synth", "--deals", "120", "--seed", "4", "--out", str(tmp_path / "deals.csv")])
    assert args.func(args) == 0
    data = read_deals(tmp_path / "deals.csv")
    won = sum(r.outcome is Outcome.WON for r in data.records)
    assert len(data.records) == 120
    assert capsys.readouterr().out.startswith(f"wrote 120 deals to {tmp_path / 'deals.csv'}: {won} won, ")


def test_public_shaped_csv_trains_through_the_cli(tmp_path, capsys):
    data = write_crm(1500, seed=3, path=tmp_path / "crm.csv")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"categorical": ["year_established"], "exclude": ["subsidiary_of"]}))
    args = parser().parse_args(["train", "scorer", "--data", str(data), "--out", str(tmp_path / "out"),
                                "--grid", "small", "--feature-spec", str(spec_file), "--quiet", "--folds", "3"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "held-out: ROC AUC" in printed
    manifest = Manifest.load(tmp_path / "out")
    features = manifest.spec["features"]
    for name in ("attr.product", "attr.series", "attr.sales_price", "attr.account_revenue", "attr.manager"):
        assert name in features["features"]
    assert "attr.year_established" in features["categories"]  # the spec file made it categorical
    excluded = features["excluded"]
    assert excluded["attr.subsidiary_of"] == "excluded by the feature spec"
    # The two leaks of this export: a date after the snapshot, and an amount that is 0 when lost.
    assert excluded["attr.contract_signed_at.days_ago"] == "no value in the training data"
    assert excluded["attr.close_value"].startswith("suspected leakage")
    assert 0.6 < manifest.metrics["roc_auc"] < 0.95


def test_train_embedder_refuses_a_non_empty_out_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    args = parser().parse_args(["train", "embedder", "--out", str(tmp_path)])
    assert args.func(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
