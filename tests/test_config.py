"""Server configuration: flag over environment over default, and the checks."""

from __future__ import annotations

import argparse

import pytest

from server.config import ServerConfig, add_arguments, from_namespace


def config(argv: list[str], environ: dict[str, str] | None = None) -> ServerConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_namespace(parser.parse_args(argv), environ or {})


def test_a_flag_wins_over_the_environment_which_wins_over_the_default():
    assert config([]).search_hnsw_ef == 0
    assert config([], {"VECTOROS_SEARCH_HNSW_EF": "48"}).search_hnsw_ef == 48
    assert config(["--search-hnsw-ef", "32"], {"VECTOROS_SEARCH_HNSW_EF": "48"}).search_hnsw_ef == 32
    assert config(["--reindex-on-start"], {"VECTOROS_REINDEX_ON_START": "0"}).reindex_on_start is True


@pytest.mark.parametrize(
    "argv, environ, message",
    [
        (["--search-hnsw-ef", "-1"], {}, "--search-hnsw-ef: must be >= 0"),
        ([], {"VECTOROS_SEARCH_HNSW_EF": "many"}, "VECTOROS_SEARCH_HNSW_EF: cannot read 'many' as int"),
        (["--port", "70000"], {}, "--port: must be in [0, 65535]"),
        (["--embed-max-wait-ms", "-1"], {}, "--embed-max-wait-ms: must be >= 0"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(argv, environ, message):
    with pytest.raises(SystemExit) as refused:
        config(argv, environ)
    assert message in str(refused.value)


def test_secrets_have_no_flag():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    usage = parser.format_help()
    assert "--search-hnsw-ef" in usage and "--qdrant-url" in usage
    assert "--anthropic-api-key" not in usage and "--qdrant-api-key" not in usage
