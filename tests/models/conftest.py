"""Fixtures for the model repository tests (helpers live in model_kit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.model_kit import make_artifact


@pytest.fixture
def artifact(tmp_path):
    """A factory: artifact(seed=..., metrics=...) -> artifact folder."""
    counter = iter(range(10_000))

    def build(**kwargs) -> Path:
        directory = tmp_path / f"artifact-{next(counter)}"
        make_artifact(directory, **kwargs)
        return directory

    return build


@pytest.fixture
def models_root(tmp_path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root
