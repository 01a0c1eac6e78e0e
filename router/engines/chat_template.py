"""Render chat messages into a prompt string with the model's own Jinja chat template (sandboxed)."""

from __future__ import annotations

from functools import lru_cache

from jinja2.sandbox import ImmutableSandboxedEnvironment

from router.types import Message

# Used only when the model file carries no template and the config gives none (base models).
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@lru_cache(maxsize=8)
def _compile(template: str):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(template)


def _raise(message: str) -> None:
    raise ValueError(message)


class ChatTemplate:
    def __init__(self, template: str, bos_token: str = "", eos_token: str = "") -> None:
        self._template = _compile(template)
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: list[Message]) -> str:
        """The prompt for the assistant's next turn. A template that rejects the messages raises ValueError."""
        return self._template.render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            bos_token=self._bos,
            eos_token=self._eos,
        )
