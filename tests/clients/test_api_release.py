"""The API cannot break silently: `buf breaking` against the released image
passes today and fails on a breaking change; the clients carry the server's
version; the client package's stubs are the generated ones."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import vectoros_client

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
RELEASED = PROTOS / "released" / "vectoros-v1.binpb"
BUF = Path(sys.executable).parent / "buf"


def breaking(protos: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BUF), "breaking", "--against", str(RELEASED)], cwd=protos, capture_output=True,
                          text=True, timeout=120)


def test_todays_protos_do_not_break_the_released_api():
    result = breaking(PROTOS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "file, change, complaint",
    [
        ("common.proto", ("  string notes = 7;\n", ""), 'Previously present field "7" with name "notes"'),
        ("scoring.proto", ("  double margin = 5;", "  float margin = 5;"), 'changed type from "double" to "float"'),
        ("forecast.proto", ("rpc CompareScenarios(", "rpc CompareWhatIfs("),
         'Previously present RPC "CompareScenarios"'),
    ],
)
def test_a_breaking_change_fails(tmp_path, file, change, complaint):
    copy = tmp_path / "protos"
    shutil.copytree(PROTOS, copy, ignore=shutil.ignore_patterns("released"))
    path = copy / "vectoros" / "v1" / file
    text = path.read_text()
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1], 1))
    result = breaking(copy)
    assert result.returncode != 0 and complaint in result.stdout, result.stdout + result.stderr


def test_an_added_field_is_not_breaking(tmp_path):
    copy = tmp_path / "protos"
    shutil.copytree(PROTOS, copy, ignore=shutil.ignore_patterns("released"))
    path = copy / "vectoros" / "v1" / "forecast.proto"
    request_end = "  SimulationOptions options = 3;\n}"
    added = request_end[:-1] + "  // A target.\n  double target = 4;\n}"
    path.write_text(path.read_text().replace(request_end, added, 1))
    result = breaking(copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_clients_carry_the_servers_version():
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    python_client = tomllib.loads((ROOT / "clients" / "python" / "pyproject.toml").read_text())["project"]["version"]
    typescript = json.loads((ROOT / "clients" / "typescript" / "package.json").read_text())["version"]
    locked = json.loads((ROOT / "clients" / "typescript" / "package-lock.json").read_text())["version"]
    typescript_constant = re.search(r'VERSION = "([^"]+)"',
                                    (ROOT / "clients" / "typescript" / "src" / "version.ts").read_text())[1]
    released = re.search(r"released\s+with\s+version (\S+) of", (PROTOS / "released" / "README.md").read_text())[1]
    assert {python_client, vectoros_client.__version__, typescript, locked, typescript_constant, released} == {server}


def test_the_client_packages_stubs_are_generated_and_importable_alone():
    check = subprocess.run([sys.executable, "scripts/gen_stubs.py", "--check"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stdout
    # Without the server's `vectoros` package on the path, the client still imports.
    code = ("import sys; sys.modules['vectoros'] = None; import vectoros_client, vectoros_client.v1.insight_pb2_grpc;"
            " print(vectoros_client.Client.__name__)")
    alone = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=60)
    assert alone.returncode == 0 and alone.stdout.strip() == "Client", alone.stderr
