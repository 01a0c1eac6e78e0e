from __future__ import annotations

from pathlib import Path

import pytest

from router.config import DEFAULT_MODEL_NAME, ConfigError, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "router.yaml"
    path.write_text(text)
    return path


def test_no_file_gives_the_embedded_default() -> None:
    s = load_settings(environ={})
    assert [m.name for m in s.models] == [DEFAULT_MODEL_NAME]
    assert s.models[0].engine == "llamacpp" and s.models[0].path is None
    assert (s.server.host, s.server.port, s.server.max_body_bytes) == ("127.0.0.1", 8080, 4 * 1024 * 1024)
    assert s.server.log_prompts is False


def test_file_and_environment_override(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9000\nmodels:\n  - name: a\n    n_ctx: 1024\n")
    s = load_settings(path, environ={"HYBRID_ROUTER_SERVER__HOST": "0.0.0.0", "HYBRID_ROUTER_SERVER__PORT": "9100"})
    assert (s.server.host, s.server.port) == ("0.0.0.0", 9100)
    assert s.models[0].n_ctx == 1024 and s.local_model == "a"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("server:\n  prot: 1\n", "server.prot: unknown key"),
        ("surver: {}\n", "surver: unknown key"),
        ("server:\n  port: '8080'\n", "server.port"),
        ("server:\n  port: 70000\n", "server.port"),
        ("server:\n  log_prompts: maybe\n", "server.log_prompts"),
        ("models:\n  - name: a\n    n_ctx: big\n", "models.0.n_ctx"),
        ("models:\n  - name: a\n    engine: tensorflow\n", "models.0.engine"),
        ("models:\n  - name: a\n    colour: red\n", "models.0.colour: unknown key"),
        ("models:\n  - name: a\n    engine: openai_http\n", "models.0"),
        ("models: []\n", "models"),
        ("default_model: nope\n", "default_model"),
    ],
)
def test_bad_keys_and_types_name_the_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert str(path) in message
    assert key in message


def test_bad_environment_override_names_it() -> None:
    with pytest.raises(ConfigError, match=r"server\.port") as caught:
        load_settings(environ={"HYBRID_ROUTER_SERVER__PORT": "not-a-port"})
    assert "environment" in str(caught.value)


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"), environ={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "server: [\n"), environ={})


def test_example_config_is_valid_and_documents_every_option() -> None:
    example = Path(__file__).parents[2] / "deploy" / "router.example.yaml"
    settings = load_settings(example, environ={})
    text = example.read_text()
    assert settings.routing == Settings().routing  # the example shows the defaults
    assert (settings.cache, settings.embeddings) == (Settings().cache, Settings().embeddings)
    assert settings.state == Settings().state
    from router.config import BudgetSettings, FrontierModelSettings, TenantSettings

    f = settings.frontier
    for model in (
        type(settings),
        type(settings.server),
        type(settings.models[0]),
        type(settings.routing),
        type(settings.routing.rules[0]),
        type(f),
        type(f.resilience),
        type(f.escalation),
        type(f.advisor),
        type(f.compression),
        FrontierModelSettings,
        type(settings.embeddings),
        type(settings.cache),
        type(settings.auth),
        type(settings.limits),
        type(settings.accounting),
        type(settings.state),
        TenantSettings,
        BudgetSettings,
    ):
        for field in model.model_fields:
            assert f"{field}:" in text, f"{model.__name__}.{field} is not documented in {example.name}"


def test_rerank_on_the_embedding_model_follows_embeddings_unless_asked_for() -> None:
    assert Settings().rerank_served
    assert not Settings(embeddings={"enabled": False}).rerank_served  # by default it just follows
    cross = Settings(embeddings={"enabled": False}, rerank={"engine": "cross-encoder", "path": "/m.onnx"})
    assert cross.rerank_served  # a cross-encoder does not need the embedding model
    for asked in ({"enabled": True}, {"engine": "embedding"}, {"fallback_url": "http://x", "fallback_model": "r"}):
        with pytest.raises(ValueError, match=r"rerank\.engine embedding needs embeddings\.enabled: true"):
            Settings(embeddings={"enabled": False}, rerank=asked)
