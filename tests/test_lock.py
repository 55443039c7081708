"""The environment the tests run in is the one the lock file describes."""

from importlib import metadata

import pytest

from scripts.lock import LOCKS, SETS, canonical, read_lock


def test_every_locked_package_is_installed_at_its_locked_version():
    pins = read_lock(LOCKS / "dev.lock")
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (version, installed.get(name)) for name, version in pins.items() if installed.get(name) != version}
    assert not wrong, f"(locked, installed) differ: {wrong}"


def test_the_serving_lock_is_a_subset_of_the_dev_lock_without_training_packages():
    serve, dev = read_lock(LOCKS / "serve.lock"), read_lock(LOCKS / "dev.lock")
    assert {name: dev.get(name) for name in serve} == serve
    for heavy in ("torch", "sentence-transformers", "xgboost-cpu", "scikit-learn"):
        assert heavy not in serve
    assert set(SETS) == {"serve", "dev"}


@pytest.mark.parametrize("line", ["numpy==2.4.6", "numpy --hash=sha256:00"])
def test_a_lock_line_without_version_and_hash_is_refused(tmp_path, line):
    path = tmp_path / "bad.lock"
    path.write_text(line + "\n")
    with pytest.raises(SystemExit, match="is not 'name==version"):
        read_lock(path)
