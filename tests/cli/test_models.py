import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from server.models.repository import Labels, ModelRepository
from vectoros.cli.models import add_parser

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="vectoros")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_publish_list_rollback_canary_promote(artifact, models_root, capsys):
    root = str(models_root)
    code, out, _ = run(["publish", str(artifact(seed=1)), "--models", root], capsys)
    assert code == 0 and "published scorer version 1 as production" in out

    code, out, err = run(["publish", str(artifact(seed=2, metrics={"roc_auc": 0.7})), "--models", root], capsys)
    assert code == 2 and out == ""
    assert "metrics.roc_auc: 0.7 is worse than production version 1's 0.8" in err

    code, out, _ = run(
        ["publish", str(artifact(seed=2, metrics={"roc_auc": 0.7})), "--models", root, "--force"], capsys
    )
    assert code == 0 and "version 2 as production (production was 1)" in out
    assert "roc_auc" in out and "worse" in out

    code, out, _ = run(["publish", str(artifact(seed=3, metrics={"roc_auc": 0.9})), "--models", root,
                        "--canary", "5"], capsys)
    assert code == 0 and "version 3 as canary" in out

    code, out, _ = run(["models", "list", "--models", root], capsys)
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["NAME", "VERSION", "LABELS", "KIND", "CREATED"]
    assert lines[2].split()[:3] == ["scorer", "2", "production"]
    assert lines[3].split()[:3] == ["scorer", "3", "canary"]
    assert "roc_auc=0.9" in lines[3]

    code, out, _ = run(["models", "list", "--models", root, "--json"], capsys)
    rows = json.loads(out)
    assert [(r["version"], r["labels"]) for r in rows] == [(1, []), (2, ["production"]), (3, ["canary 5%"])]
    assert list(rows[0]["metrics"])[0] == "roc_auc"

    code, out, _ = run(["models", "rollback", "scorer", "--models", root], capsys)
    assert code == 0 and out.strip() == "scorer: production 1, canary 3 at 5%"
    code, _, err = run(["models", "rollback", "scorer", "--to", "9", "--models", root], capsys)
    assert code == 2 and "scorer has no version 9" in err
    code, _, err = run(["models", "rollback", "ghost", "--models", root], capsys)
    assert code == 2 and "no model 'ghost'" in err
    assert not (models_root / "ghost").exists()

    code, out, _ = run(["models", "canary", "scorer", "--version", "2", "--percent", "20", "--models", root], capsys)
    assert code == 0 and out.strip() == "scorer: production 1, canary 2 at 20%"
    code, out, _ = run(["models", "promote", "scorer", "--models", root], capsys)
    assert code == 0 and out.strip() == "scorer: production 2"
    code, _, err = run(["models", "canary", "scorer", "--version", "2", "--models", root], capsys)
    assert code == 2 and "--percent" in err
    code, out, _ = run(["models", "canary", "scorer", "--clear", "--models", root], capsys)
    assert code == 0
    assert ModelRepository(models_root).labels("scorer") == Labels(2)

    code, out, _ = run(["models", "show", "scorer", "--models", root], capsys)
    assert code == 0 and json.loads(out)["version"] == 2


def test_list_flags_broken_versions(artifact, models_root, capsys):
    run(["publish", str(artifact(seed=1)), "--models", str(models_root)], capsys)
    (models_root / "scorer" / "1" / "manifest.json").write_text("{}")
    code, out, _ = run(["models", "list", "--models", str(models_root)], capsys)
    assert code == 0 and "BROKEN" in out and "missing key" in out


def test_models_root_from_environment(artifact, models_root, capsys, monkeypatch):
    monkeypatch.setenv("VECTOROS_MODELS", str(models_root))
    code, out, _ = run(["publish", str(artifact(seed=1))], capsys)
    assert code == 0
    assert ModelRepository(models_root).versions("scorer") == [1]


def test_tampered_publish_exits_2_in_a_real_process(artifact, models_root):
    source = artifact(seed=1)
    (source / "feature_spec.txt").write_text("tampered\n")
    script = (
        "import argparse, sys\n"
        "from vectoros.cli.models import add_parser\n"
        "p = argparse.ArgumentParser(prog='vectoros'); add_parser(p.add_subparsers(required=True))\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, "publish", str(source), "--models", str(models_root)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert completed.returncode == 2
    assert "files.feature_spec.txt: SHA-256 does not match" in completed.stderr
    assert not (models_root / "scorer" / "1").exists()


def test_serving_side_imports_no_training_stack():
    script = (
        "import sys, onnxruntime\n"
        "import server.models.registry, server.models.publish, vectoros.cli.models\n"
        "heavy = {'torch', 'sentence_transformers', 'xgboost', 'sklearn'} & set(sys.modules)\n"
        "sys.exit(', '.join(sorted(heavy)) or 0)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, timeout=60, capture_output=True,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert completed.returncode == 0, completed.stderr
