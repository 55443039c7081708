"""The Python examples (clients/python/examples) and scripts/smoke.py, run as a
user runs them, against the real server with a token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from vectoros_client import Client

from tests.clients.sample import history

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "clients" / "python" / "examples"
WORKSPACE = "examples"


@pytest.fixture(scope="module")
def environment(served) -> dict[str, str]:
    with Client(served.address, token=served.writer) as client:
        client.upsert_deals(WORKSPACE, history("past-"))
    return {**os.environ, "VECTOROS_ADDRESS": served.address, "VECTOROS_TOKEN": served.writer,
            "VECTOROS_WORKSPACE": WORKSPACE}


def run(script: Path, environment: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, str(script), *args], env=environment, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def readme_block(source: str) -> str:
    """The code block of README.md that follows the marker naming `source`."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(rf"<!-- {re.escape(source)} -->\n```\w+\n(.*?)```", readme, re.DOTALL)
    assert found, f"README.md has no block for {source}"
    return found[1]


def test_the_readme_example(environment):
    quickstart = EXAMPLES / "quickstart.py"
    assert readme_block("clients/python/examples/quickstart.py") == quickstart.read_text()
    assert len(quickstart.read_text().splitlines()) <= 12
    out = run(quickstart, environment)
    assert re.fullmatch(r"win 0\.\d\d \((low|medium|high)\), similar: \[.*\]\n", out), out


def test_auto_embed(environment):
    out = run(EXAMPLES / "auto_embed.py", environment)
    assert "created: 1 stored, 0 unchanged" in out
    assert "probability changed: 1 stored, 1 unchanged" in out
    assert "notes changed: 1 stored, 0 unchanged" in out
    assert "its vector: 384 float32 values, norm 1.000" in out
    assert "deleted: True" in out


def test_find_similar(environment):
    out = run(EXAMPLES / "find_similar.py", environment)
    closed = re.search(r"like the new lead \(closed deals only\): (\d+) matches, won (\d+), lost (\d+)", out)
    assert closed and int(closed[1]) == int(closed[2]) + int(closed[3]) == 4  # the 4 closed deals of the history
    assert re.search(r"like stored deal past-\d: 3 matches", out) and "free text: 3 matches" in out


def test_score_pipeline(environment):
    out = run(EXAMPLES / "score_pipeline.py", environment)
    assert "scored 4 deals with scorer v1" in out
    probabilities = [float(p) for p in re.findall(r"model (0\.\d\d)", out)]
    assert len(probabilities) == 4 and probabilities == sorted(probabilities)
    assert re.search(r"weighted pipeline: model [\d,]+ vs rep 280,200 USD", out)


def test_forecast_with_a_target(environment):
    out = run(EXAMPLES / "forecast_target.py", environment)
    assert "weighted pipeline 214,000" in out
    before = float(re.search(r"chance of reaching 200,000: ([\d.]+)%", out)[1])
    after = float(re.search(r"if we close stark in March: .* chance of reaching 200,000: ([\d.]+)%", out)[1])
    assert 0 < before < after < 100  # stark expected in April: pulling it into the quarter helps


def test_insights_and_feedback(environment):
    out = run(EXAMPLES / "insights_feedback.py", environment)
    assert re.search(r"\d+ insights by rules, win 0\.\d\d \(scorer v1\)", out)
    assert "sent again: duplicate=True" in out and "outcome recorded: won" in out
    assert "exported example: 1 feedback, outcome won" in out


def test_smoke_script(environment, served):
    out = run(ROOT / "scripts" / "smoke.py", environment, "--address", served.address, "--workspace", WORKSPACE)
    for service in ("Embedding", "Similarity", "Scoring", "Forecast", "Insight"):
        assert f"health {service}Service: SERVING" in out
    assert "Embed: 2 vectors of 384" in out and "FindSimilarDeals: 5 matches" in out
    assert re.search(r"GenerateInsights \(rules\): \d+ insights", out)
