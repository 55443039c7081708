"""Bearer tokens: the tokens file (hashes only, strict, atomic), who a token is,
reload and revocation without restart; and which workspaces a request names."""

import json
import os
import stat
import time

import pytest

from server.access import named_workspaces, required_role
from server.auth import (
    UNAUTHENTICATED_MESSAGE,
    Role,
    TokenAuthority,
    TokenFileError,
    create_token,
    read_tokens,
    revoke_token,
)
from vectoros.core.errors import InvalidInput, PermissionDenied, Unauthenticated
from vectoros.v1 import common_pb2, forecast_pb2, insight_pb2, scoring_pb2, similarity_pb2


def test_the_file_keeps_only_a_hash_and_is_private(tmp_path):
    path = tmp_path / "tokens.json"
    token, entry = create_token(path, "writer", ["acme"], name="crm")
    text = path.read_text()
    assert token.startswith("vos_") and token not in text and token.split("_")[2] not in text
    assert entry.sha256 in text and entry.id in token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    (stored,) = read_tokens(path)
    assert (stored.role, stored.workspaces, stored.name, stored.revoked_at) == (Role.WRITER, {"acme"}, "crm", None)


def test_a_token_stands_for_its_role_and_workspaces(tmp_path):
    path = tmp_path / "tokens.json"
    reader, _ = create_token(path, "reader", ["a", "b"])
    admin, _ = create_token(path, "admin", [])
    authority = TokenAuthority(path)
    principal = authority.authenticate(f"Bearer {reader}")
    assert principal.role is Role.READER and principal.holds("a") and principal.holds("b")
    assert not principal.holds("c")
    with pytest.raises(PermissionDenied) as denied:
        principal.require_workspace("deals[2].workspace_id", "c")
    assert denied.value.field == "deals[2].workspace_id"
    with pytest.raises(PermissionDenied, match="a reader token may not call UpsertDeals"):
        principal.require_role(Role.WRITER, "UpsertDeals")
    assert authority.authenticate(f"bearer {admin}").holds("anything")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer vos_", "Bearer nope"])
def test_no_or_a_malformed_token_is_unauthenticated(tmp_path, header):
    path = tmp_path / "tokens.json"
    create_token(path, "reader", ["a"])
    with pytest.raises(Unauthenticated) as error:
        TokenAuthority(path).authenticate(header)
    assert error.value.message == UNAUTHENTICATED_MESSAGE


def test_a_wrong_secret_with_a_known_id_is_refused_without_echoing_it(tmp_path):
    path = tmp_path / "tokens.json"
    token, _ = create_token(path, "reader", ["a"])
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthenticated) as error:
        TokenAuthority(path).authenticate(f"Bearer {forged}")
    assert forged not in str(error.value) and token not in str(error.value)


def test_new_and_revoked_tokens_take_effect_without_restart(tmp_path):
    path = tmp_path / "tokens.json"
    first, entry = create_token(path, "reader", ["a"])
    authority = TokenAuthority(path, reload_seconds=0.0)
    assert authority.authenticate(f"Bearer {first}").token_id == entry.id
    second, _ = create_token(path, "writer", ["b"])
    assert authority.authenticate(f"Bearer {second}").role is Role.WRITER
    revoked = revoke_token(path, entry.id)
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated):
        authority.authenticate(f"Bearer {first}")
    assert [t.id for t in read_tokens(path)][0] == entry.id  # kept, so the id is never reused
    with pytest.raises(KeyError):
        revoke_token(path, "no-such-id")


def test_a_broken_reload_keeps_the_last_good_tokens(tmp_path, caplog):
    path = tmp_path / "tokens.json"
    token, _ = create_token(path, "reader", ["a"])
    authority = TokenAuthority(path, reload_seconds=0.0)
    path.write_text("{not json")
    time.sleep(0.01)
    assert authority.authenticate(f"Bearer {token}").holds("a")
    assert any("previous tokens stay in force" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"format": 1}, "exactly 'format' and 'tokens'"),
        ({"format": 2, "tokens": []}, "format must be 1"),
        ({"format": 1, "tokens": [{"id": "x"}]}, "missing keys"),
        ({"format": 1, "tokens": [{"id": "x", "name": "", "role": "root", "workspaces": ["a"], "sha256": "0" * 64,
                                   "created_at": "", "revoked_at": None}]}, "must be reader, writer or admin"),
        ({"format": 1, "tokens": [{"id": "x", "name": "", "role": "reader", "workspaces": [], "sha256": "0" * 64,
                                   "created_at": "", "revoked_at": None}]}, "needs at least one workspace"),
        ({"format": 1, "tokens": [{"id": "x", "name": "", "role": "reader", "workspaces": ["a"], "sha256": "0",
                                   "created_at": "", "revoked_at": None, "secret": "s"}]}, "unknown keys"),
    ],
)
def test_the_tokens_file_is_read_strictly(tmp_path, document, message):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(document))
    with pytest.raises(TokenFileError, match=message):
        TokenAuthority(path)


def test_creating_a_scoped_token_needs_a_workspace(tmp_path):
    with pytest.raises(InvalidInput, match="needs at least one workspace"):
        create_token(tmp_path / "t.json", "writer", [])
    with pytest.raises(InvalidInput, match="workspace: at most 128 bytes"):
        create_token(tmp_path / "t.json", "writer", ["x" * 200])


def test_roles_per_method():
    assert required_role("/grpc.health.v1.Health/Check") is None
    assert required_role("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is None
    for method in ("SimilarityService/UpsertDeals", "SimilarityService/DeleteDeals",
                   "InsightService/RecordFeedback", "InsightService/RecordOutcome"):
        assert required_role(f"/vectoros.v1.{method}") is Role.WRITER
    for method in ("ScoringService/ScoreDeals", "ForecastService/Forecast", "EmbeddingService/Embed",
                   "SimilarityService/FindSimilarDeals", "SimilarityService/GetStats",
                   "InsightService/GenerateInsights", "InsightService/ExportTrainingData"):
        assert required_role(f"/vectoros.v1.{method}") is Role.READER


def test_every_workspace_a_request_names_is_found():
    deals = [common_pb2.Deal(id="1", workspace_id="a"), common_pb2.Deal(id="2"),
             common_pb2.Deal(id="3", workspace_id="b")]
    assert list(named_workspaces(scoring_pb2.ScoreDealsRequest(deals=deals))) == [
        ("deals[0].workspace_id", "a"), ("deals[2].workspace_id", "b")]
    assert list(named_workspaces(scoring_pb2.ScoreDealRequest(deal=deals[2]))) == [("deal.workspace_id", "b")]
    upsert = similarity_pb2.UpsertDealsRequest(workspace_id="a", deals=deals[2:])
    assert list(named_workspaces(upsert)) == [("workspace_id", "a"), ("deals[0].workspace_id", "b")]
    compare = forecast_pb2.CompareScenariosRequest(base_deals=deals[:1])
    compare.scenarios.add(name="s").added_deals.append(common_pb2.Deal(id="9", workspace_id="c"))
    assert list(named_workspaces(compare)) == [
        ("base_deals[0].workspace_id", "a"), ("scenarios[0].added_deals[0].workspace_id", "c")]
    assert list(named_workspaces(insight_pb2.RecordFeedbackRequest(workspace_id="z"))) == [("workspace_id", "z")]
    assert list(named_workspaces(forecast_pb2.ForecastRequest())) == []
