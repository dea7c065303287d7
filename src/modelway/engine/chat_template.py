"""The chat template a GGUF file carries in its metadata, rendered with Jinja2."""

from __future__ import annotations

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

# Used only when a GGUF has no template of its own.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ChatTemplate:
    def __init__(self, template: str | None, bos_token: str, eos_token: str) -> None:
        self._formatter = Jinja2ChatFormatter(
            template=template or CHATML, eos_token=eos_token, bos_token=bos_token
        )

    def render(self, messages: list[dict[str, str]]) -> str:
        return str(self._formatter(messages=messages).prompt)  # type: ignore[arg-type]
