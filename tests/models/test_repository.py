import json
import shutil

import pytest

from server.models.repository import Labels, ModelRepository, RepositoryError
from vectoros.core.errors import NotFound
from vectoros.core.manifest import Manifest, ManifestError


def place(artifact_dir, root, version, name="scorer"):
    """Copy an artifact into the repository by hand, as an operator could."""
    target = root / name / str(version)
    shutil.copytree(artifact_dir, target)
    Manifest.load(target).with_version(version).write(target)
    return target


def test_versions_are_integer_folders_only(artifact, models_root):
    source = artifact()
    for version in (1, 2, 10):
        place(source, models_root, version)
    for other in (".tmp-abc", "07", "x", "-1", "0"):
        (models_root / "scorer" / other).mkdir()
    (models_root / "scorer" / "11").write_text("a file, not a folder")
    (models_root / ".hidden").mkdir()
    repo = ModelRepository(models_root)
    assert repo.names() == ["scorer"]
    assert repo.versions("scorer") == [1, 2, 10]
    assert repo.versions("absent") == []
    assert repo.manifest("scorer", 10).version == 10


def test_manifest_must_match_its_folder(artifact, models_root):
    target = place(artifact(), models_root, 1)
    repo = ModelRepository(models_root)
    Manifest.load(target).with_version(5).write(target)
    with pytest.raises(ManifestError, match="version: is 5, the folder says 1"):
        repo.manifest("scorer", 1)
    with pytest.raises(NotFound, match="model_version"):
        repo.manifest("scorer", 3)


def test_labels_default_to_highest_valid_version(artifact, models_root):
    source = artifact()
    place(source, models_root, 1)
    broken = place(source, models_root, 2)
    (broken / "manifest.json").write_text("{}")
    repo = ModelRepository(models_root)
    assert repo.labels("scorer") == Labels(production=1)
    assert repo.labels("absent") == Labels(production=None)


def test_set_labels_rollback_canary_promote(artifact, models_root):
    source = artifact()
    for version in (1, 2, 3):
        place(source, models_root, version)
    repo = ModelRepository(models_root)
    labels_file = models_root / "scorer" / "labels.json"

    assert repo.set_production("scorer", 3) == Labels(3)
    assert json.loads(labels_file.read_text()) == {"production": 3}
    assert repo.set_canary("scorer", 2, 12.5) == Labels(3, 2, 12.5)
    assert json.loads(labels_file.read_text()) == {"production": 3, "canary": {"version": 2, "percent": 12.5}}
    assert repo.labels("scorer") == Labels(3, 2, 12.5)

    # Rollback goes to the version below production; the canary label stays unless targeted.
    assert repo.rollback("scorer") == Labels(2)
    assert repo.rollback("scorer") == Labels(1)
    with pytest.raises(RepositoryError, match="no valid version below production 1"):
        repo.rollback("scorer")
    assert repo.rollback("scorer", to=3) == Labels(3)
    with pytest.raises(NotFound, match="version: scorer has no version 7"):
        repo.rollback("scorer", to=7)
    assert repo.labels("scorer") == Labels(3)

    repo.set_canary("scorer", 1, 50)
    assert repo.promote("scorer") == Labels(1)
    with pytest.raises(RepositoryError, match="no canary to promote"):
        repo.promote("scorer")
    with pytest.raises(RepositoryError, match="already production"):
        repo.set_canary("scorer", 1, 10)
    for percent in (0, -1, 101, float("nan"), True):
        with pytest.raises(RepositoryError, match="percent"):
            repo.set_canary("scorer", 2, percent)
    repo.set_canary("scorer", 2, 5)
    assert repo.clear_canary("scorer") == Labels(1)


def test_rollback_skips_deleted_and_broken_versions(artifact, models_root):
    source = artifact()
    for version in (1, 2, 3, 4):
        place(source, models_root, version)
    repo = ModelRepository(models_root)
    repo.set_production("scorer", 4)
    shutil.rmtree(models_root / "scorer" / "3")
    (models_root / "scorer" / "2" / "manifest.json").write_text("{")
    assert repo.rollback("scorer") == Labels(1)


@pytest.mark.parametrize(
    "text, rule",
    [
        ("{", "not valid JSON"),
        ('{"canary": {"version": 1, "percent": 5}}', "production: missing key"),
        ('{"production": 1, "shadow": 2}', "shadow: unknown key"),
        ('{"production": "1"}', "production: must be a positive integer"),
        ('{"production": 1, "canary": {"version": 2}}', "canary: must be"),
        ('{"production": 1, "canary": {"version": 2, "percent": 150}}', "canary.percent"),
    ],
)
def test_malformed_labels_are_refused(models_root, text, rule):
    (models_root / "scorer").mkdir()
    (models_root / "scorer" / "labels.json").write_text(text)
    with pytest.raises(RepositoryError, match=rule):
        ModelRepository(models_root).labels("scorer")
