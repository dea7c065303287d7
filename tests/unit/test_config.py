import re
from pathlib import Path

import pytest

from modelway.config import ConfigError, default_config, load_config, parse_config

VALID = """
server: {host: 127.0.0.1, port: 4100}
models:
  - name: gpt-4o-mini
    deployments:
      - provider: openai
        model: gpt-4o-mini
        api_key: ${OPENAI_API_KEY}
        weight: 2
        tags: [external]
  - name: claude
    deployments:
      - provider: anthropic
        model: claude-sonnet-4-5
        api_key: ${ANTHROPIC_API_KEY:-sk-ant-default}
  - name: smollm2-135m-instruct
    deployments:
      - provider: local
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=env or {})
    return info.value.problems


def test_valid_config_interpolates_env_and_defaults() -> None:
    config = parse_config(VALID, env={"OPENAI_API_KEY": "sk-test-123"})
    openai, claude, local = (g.deployments[0] for g in config.models)
    assert openai.api_key is not None and openai.api_key.get_secret_value() == "sk-test-123"
    assert claude.api_key is not None
    assert claude.api_key.get_secret_value() == "sk-ant-default"
    assert openai.weight == 2 and openai.tags == ["external"]
    assert local.provider == "local" and local.context_size == 2048
    assert config.server.port == 4100
    assert (
        config.summary() == "3 model group(s), 3 deployment(s) (anthropic: 1, local: 1, openai: 1)"
    )


def test_secret_values_never_appear_in_repr() -> None:
    config = parse_config(VALID, env={"OPENAI_API_KEY": "sk-very-secret"})
    assert "sk-very-secret" not in repr(config)
    assert "sk-very-secret" not in str(config.model_dump())


def test_missing_env_var_is_reported_with_its_path() -> None:
    found = problems(VALID)
    assert found == [
        "models[0].deployments[0].api_key: environment variable OPENAI_API_KEY is not set"
    ]


def test_dollar_escape_keeps_a_literal_dollar() -> None:
    text = VALID.replace("${OPENAI_API_KEY}", "pa$$word")
    config = parse_config(text)
    key = config.models[0].deployments[0].api_key
    assert key is not None and key.get_secret_value() == "pa$word"


def test_every_problem_is_reported_with_its_path() -> None:
    text = """
models:
  - name: a
    deployments:
      - provider: openai
        model: m
        base_url: ftp://nowhere
        api_key: sk-should-not-be-printed
        surprise: 1
  - name: a
    deployments:
      - provider: vertex
  - name: b
    deployments: []
"""
    found = problems(text)
    assert "models[0].deployments[0].base_url: must be an http:// or https:// URL" in found
    assert "models[0].deployments[0].surprise: unknown field" in found
    wanted = "openai, anthropic, local, local_embedding"
    assert f"models[1].deployments[0]: provider must be one of: {wanted}" in found
    assert any(
        p.startswith("models[2].deployments: List should have at least 1 item") for p in found
    )
    assert not any("sk-should-not-be-printed" in p for p in found)


def test_duplicate_group_names_are_refused() -> None:
    text = """
models:
  - name: a
    deployments: [{provider: openai, model: x, base_url: "http://h"}]
  - name: a
    deployments: [{provider: openai, model: y, base_url: "http://h"}]
"""
    assert problems(text) == ["models[1].name: 'a' is already used by models[0]"]


def test_local_model_path_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    text = f"""
models:
  - name: tiny
    deployments: [{{provider: local, path: "{missing}"}}]
"""
    assert problems(text) == [f"models[0].deployments[0].path: no such file: {missing}"]


def test_invalid_yaml_reports_the_line() -> None:
    found = problems("models:\n  - name: [unclosed\n")
    assert len(found) == 1 and found[0].startswith("line ")


def test_top_level_must_be_a_mapping() -> None:
    assert problems("- a\n- b\n") == ["(top level): must be a mapping with at least `models`"]


def test_deployment_ids_are_unique_and_readable() -> None:
    text = """
models:
  - name: g
    deployments:
      - {provider: openai, model: m, base_url: "http://a"}
      - {provider: openai, model: m, base_url: "http://b"}
      - {provider: openai, model: n, base_url: "http://c", id: mine}
"""
    ids = [dep_id for _, dep_id, _ in parse_config(text).deployment_ids()]
    assert ids == ["openai:m", "openai:m#2", "mine"]


def test_default_config_serves_the_embedded_model() -> None:
    config = default_config()
    assert [g.name for g in config.models] == ["smollm2-135m-instruct", "all-minilm-l6-v2"]
    assert config.models[0].deployments[0].provider == "local"
    assert config.models[1].deployments[0].provider == "local_embedding"


def test_load_config_reports_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.problems[0].endswith("cannot read: FileNotFoundError")


def test_default_applies_when_the_variable_is_empty_as_in_the_shell() -> None:
    config = parse_config(VALID, env={"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": ""})
    key = config.models[1].deployments[0].api_key
    assert key is not None and key.get_secret_value() == "sk-ant-default"


def test_malformed_reference_is_reported() -> None:
    found = problems(VALID.replace("${OPENAI_API_KEY}", "${OPENAI_API_KEY:default}"))
    assert found == [
        "models[0].deployments[0].api_key: malformed reference; "
        "write ${NAME} or ${NAME:-default} ($$ for a $)"
    ]


def test_empty_api_key_is_refused() -> None:
    found = problems(VALID, env={"OPENAI_API_KEY": " "})
    assert found == [
        "models[0].deployments[0].api_key: is empty (an environment variable set to nothing?)"
    ]


def test_explicit_id_colliding_with_a_derived_one_is_refused() -> None:
    text = """
models:
  - name: g
    deployments:
      - {provider: openai, model: m, base_url: "http://a", id: "openai:m#2"}
      - {provider: openai, model: m, base_url: "http://b"}
      - {provider: openai, model: m, base_url: "http://c"}
"""
    assert problems(text) == [
        "deployments: id 'openai:m#2' is used more than once; give each an `id`"
    ]


@pytest.mark.parametrize(
    "example", sorted(Path(__file__).parents[2].joinpath("examples").glob("*.yaml")), ids=str
)
def test_every_example_config_is_valid(example: Path) -> None:
    names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", example.read_text())
    env = {name: _placeholder(name) for name in names}
    config = load_config(example, env=env)
    assert config.models


def _placeholder(name: str) -> str:
    if name.startswith("DATABASE"):
        return "postgresql://postgres@127.0.0.1:5432/modelway"
    if name.startswith("REDIS"):
        return "redis://127.0.0.1:6379/0"
    if name.endswith("URL"):
        return "http://127.0.0.1:8000/v1"
    return "placeholder-value-long-enough"


def test_store_urls_are_checked_without_echoing_them() -> None:
    text = """
database_url: mysql://root:hunter2@db/x
redis_url: http://cache:6379
models: [{name: m, deployments: [{provider: openai, model: m}]}]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.problems == [
        "database_url: must be a postgresql:// or sqlite:/// URL",
        "redis_url: must be a redis://, rediss:// or unix:// URL",
    ]
    assert "hunter2" not in str(caught.value)


def test_a_short_master_key_is_refused() -> None:
    text = "auth: {master_key: short}\nmodels: [{name: m, deployments: [{provider: local}]}]"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.problems == ["auth.master_key: must be at least 16 characters"]
