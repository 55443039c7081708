"""The README's table of limits says what the code enforces."""

import importlib
import re
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| (?P<what>[^|]+) \| (?P<limit>[^|]+) \| `(?P<where>[\w.]+)` \|$")


def documented() -> list[tuple[str, str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Limits", 1)[1].split("\n## ", 1)[0]
    return [(m["what"], m["limit"], m["where"]) for m in map(ROW.match, section.splitlines()) if m]


def value_of(where: str):
    module, _, name = where.rpartition(".")
    if module.endswith("ServerConfig"):
        from server.config import ServerConfig

        return next(f.default for f in fields(ServerConfig) if f.name == name)
    return getattr(importlib.import_module(module), name)


def number_in(limit: str) -> float:
    text = limit.split(" (")[0].replace(",", "")
    match = re.match(r"^([\d.e]+)\s*(KiB|MiB|bytes.*| each.*)?", text)
    assert match, limit
    number = float(match[1])
    unit = match[2] or ""
    return number * (1024 if unit.startswith("KiB") else 1)


def test_every_documented_limit_is_the_code_s():
    rows = documented()
    assert len(rows) >= 15
    for what, limit, where in rows:
        assert number_in(limit) == value_of(where), f"README says {what} = {limit}; {where} = {value_of(where)}"
