"""The routing decision: model alias → learned prediction on the user's turn → first matching rule → Decision.

The learned router (router/routing/learned.py) reads the user's latest turn, not the system prompt or the whole
conversation: a long fixed system prompt must not steer every turn. A short follow-up ("and in French?") is read
together with the user turn before it. Rules from the config sit on top, for operator overrides; the shipped
defaults let explicit task hints, tools and long contexts decide, then the learned decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from router import fastpath
from router.config import Settings
from router.errors import NotFound, Unavailable
from router.routing import learned
from router.routing.lexicon import FEATURES
from router.routing.rules import RouteFeatures, compile_when, matches
from router.routing.taxonomy import Task
from router.types import ChatRequest

SHORT_TURN_TOKENS = 12  # a user turn shorter than this is read with the user turn before it

ALIASES = ("auto", "local", "frontier")


@dataclass(slots=True)
class Decision:
    tier: str  # the tier that serves: local | frontier | advisor
    model: str | None  # the model that serves (None: the tier's default)
    rule: str  # what decided: a rule name, "default", "alias:local", "explicit-model"
    task: str
    task_source: str  # explicit | endpoint | inferred
    score: float  # the learned P(the local answer is not good enough)
    context_tokens: int
    reason: str | None = None  # set when the decision was changed, e.g. "frontier-unavailable"
    threshold: float = 0.5  # the learned decision's threshold: score >= threshold means frontier

    def headers(self) -> dict[str, str]:
        headers = {
            "x-router-tier": self.tier,
            "x-router-task": self.task,
            "x-router-score": f"{self.score:.4f}",
            "x-router-rule": self.rule,
            "x-router-model": self.model or "",
        }
        if self.reason:
            headers["x-router-reason"] = self.reason
        return headers

    def as_dict(self) -> dict[str, object]:
        return {
            "tier": self.tier,
            "model": self.model,
            "rule": self.rule,
            "task": self.task,
            "task_source": self.task_source,
            "score": round(self.score, 6),
            "context_tokens": self.context_tokens,
            "threshold": self.threshold,
            "reason": self.reason,
        }


class RoutingPolicy:
    def __init__(self, settings: Settings, frontier_models: tuple[str, ...] = ()) -> None:
        routing = settings.routing
        self.model = learned.shared(routing.model_file or str(learned.DEFAULT_MODEL))
        self.threshold = routing.threshold if routing.threshold is not None else self.model.default_threshold
        self.rules = tuple((r.name, compile_when(r.when), r.tier, r.model) for r in routing.rules)
        self.default_tier = routing.default_tier
        self.on_frontier_unavailable = routing.on_frontier_unavailable
        self.local_models = frozenset(m.name for m in settings.models)
        self.local_default = settings.local_model
        self.frontier_models = frontier_models

    @property
    def model_names(self) -> tuple[str, ...]:
        return (*ALIASES, *sorted(self.local_models), *self.frontier_models)

    def decide(self, request: ChatRequest) -> Decision:
        model = request.model
        if model not in self.local_models and model not in ALIASES and model not in self.frontier_models:
            raise NotFound(
                f"The model {model!r} does not exist. Use auto, local, frontier or one of: "
                f"{', '.join(sorted(self.local_models) + list(self.frontier_models))}",
                param="model",
                code="model_not_found",
            )
        scored = scored_turns(request)
        predicted = self.model.predict("\n".join(request.messages[i].content for i in scored))
        # The whole conversation's size, reusing the count the prediction made of the scored turns.
        tokens = predicted.tokens + sum(
            fastpath.estimate_tokens(m.content) for i, m in enumerate(request.messages) if i not in scored
        )
        task, source = (request.task, "explicit") if request.task else (predicted.task.value, "inferred")
        score, t = predicted.p_frontier, self.threshold
        if model in self.local_models:
            return Decision("local", model, "explicit-model", task, source, score, tokens, threshold=t)
        if model in self.frontier_models:
            return self._available(Decision("frontier", model, "explicit-model", task, source, score, tokens, None, t))
        if model != "auto":
            return self._available(Decision(model, None, f"alias:{model}", task, source, score, tokens, None, t))
        features = RouteFeatures(
            task=task,
            task_source=source,
            learned="frontier" if score >= t else "local",
            context_tokens=tokens,
            score=score,
            quality=request.quality,
            tenant=request.tenant,
            has_tools=request.has_tools,
            has_response_format=request.response_format.type != "text",
            message_count=len(request.messages),
            stream=request.stream,
        )
        tier, target, rule = self.default_tier, None, "default"
        for name, tests, rule_tier, rule_model in self.rules:
            if matches(tests, features):
                tier, target, rule = rule_tier, rule_model, name
                break
        return self._available(Decision(tier, target, rule, task, source, score, tokens, None, t))

    def explain(self, request: ChatRequest) -> dict[str, object]:
        """What the decision read: the scored text's size and the dense features (for dry runs)."""
        text = scored_text(request)
        values, _, _ = fastpath.features(text)
        return {
            "scored_chars": len(text),
            "model": self.model.version,
            "dense": dict(zip(FEATURES, values, strict=True)),
        }

    def _available(self, decision: Decision) -> Decision:
        """Fill in the serving model; apply on_frontier_unavailable when the frontier tier has nothing."""
        if decision.tier == "local":
            decision.model = decision.model or self.local_default
            return decision
        if self.frontier_models:
            decision.model = decision.model or self.frontier_models[0]
            return decision
        if self.on_frontier_unavailable == "error":
            raise Unavailable(
                f"this request was routed to the {decision.tier} tier (rule {decision.rule!r}) but no frontier "
                "model is configured; configure one, or set routing.on_frontier_unavailable: local"
            )
        decision.tier, decision.model, decision.reason = "local", self.local_default, "frontier-unavailable"
        return decision


def task_hint(value: str | None, param: str) -> str | None:
    """Validate a task named by the client (metadata.task or x-router-task)."""
    from router.errors import InvalidRequest

    if value is None or value == "":
        return None
    if value not in Task._value2member_map_:
        raise InvalidRequest(f"{param} must be one of {', '.join(t.value for t in Task)}; got {value!r}", param=param)
    return value


def scored_turns(request: ChatRequest) -> tuple[int, ...]:
    """Which messages the learned router reads: the user's latest turn, with the user turn before it when the
    latest is short; never the system prompt. Without user text (only tool results, say): all but the system."""
    users = [i for i, m in enumerate(request.messages) if m.role == "user" and m.content]
    if not users:
        rest = tuple(i for i, m in enumerate(request.messages) if m.role != "system")
        return rest or tuple(range(len(request.messages)))
    latest = users[-1]
    if len(users) > 1 and fastpath.estimate_tokens(request.messages[latest].content) < SHORT_TURN_TOKENS:
        return (users[-2], latest)
    return (latest,)


def scored_text(request: ChatRequest) -> str:
    return "\n".join(request.messages[i].content for i in scored_turns(request))


def context_tokens(request: ChatRequest) -> int:
    """Estimated tokens of the whole conversation (what the serving model must read)."""
    return sum(fastpath.estimate_tokens(m.content) for m in request.messages)
