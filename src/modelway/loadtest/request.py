"""One chat completion request, timed as vLLM's benchmark does.

TTFT is the time to the first chunk that carries content; ITL the gaps between later
content chunks; the output token count comes from ``usage`` (asked for with
``stream_options.include_usage`` when streaming), else from the number of content chunks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass(slots=True)
class Outcome:
    """What one request did; times are seconds from its start."""

    ok: bool
    latency: float
    # An HTTP status ("503"), or what failed before or after one ("connect", "timeout").
    error: str | None = None
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int | None = None

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first (vLLM's definition)."""
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.latency - self.ttft) / (self.output_tokens - 1)


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    model: str
    stream: bool
    max_tokens: int
    api_key: str | None = None
    timeout_seconds: float = 600.0

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    def body(self, prompt: str) -> bytes:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "temperature": 0.7,
        }
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)


async def send(session: aiohttp.ClientSession, target: Target, prompt: str) -> Outcome:
    start = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=target.timeout_seconds)
    try:
        async with session.post(
            target.url, data=target.body(prompt), headers=target.headers(), timeout=timeout
        ) as resp:
            if resp.status >= 300:
                await resp.read()
                return Outcome(False, time.perf_counter() - start, error=str(resp.status))
            if target.stream:
                return await _read_stream(resp, start)
            payload = await resp.read()
            return _read_body(payload, time.perf_counter() - start)
    except TimeoutError:
        return Outcome(False, time.perf_counter() - start, error="timeout")
    except aiohttp.ClientConnectorError:
        return Outcome(False, time.perf_counter() - start, error="connect")
    except aiohttp.ClientError as exc:
        return Outcome(False, time.perf_counter() - start, error=type(exc).__name__)


def _read_body(payload: bytes, latency: float) -> Outcome:
    try:
        data = orjson.loads(payload)
        choices = data["choices"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return Outcome(False, latency, error="bad_body")
    usage = data.get("usage") or {}
    tokens = usage.get("completion_tokens")
    if not isinstance(tokens, int):  # no usage: one token per word is the best guess
        text = "".join(str((c.get("message") or {}).get("content") or "") for c in choices)
        tokens = len(text.split())
    return Outcome(True, latency, output_tokens=tokens, prompt_tokens=usage.get("prompt_tokens"))


async def _read_stream(resp: aiohttp.ClientResponse, start: float) -> Outcome:
    ttft: float | None = None
    last = 0.0
    itl: list[float] = []
    chunks = 0
    usage: dict[str, Any] = {}
    done = False
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return Outcome(False, time.perf_counter() - start, error="bad_chunk")
        if not isinstance(event, dict) or "error" in event:
            return Outcome(False, time.perf_counter() - start, error="stream_error")
        if event.get("usage"):
            usage = event["usage"]
        if not any(_has_content(c) for c in event.get("choices") or ()):
            continue
        now = time.perf_counter() - start
        if ttft is None:
            ttft = now
        else:
            itl.append(now - last)
        last = now
        chunks += 1
    latency = time.perf_counter() - start
    if not done:
        return Outcome(False, latency, error="stream_cut")
    tokens = usage.get("completion_tokens")
    return Outcome(
        True,
        latency,
        ttft=ttft,
        itl=itl,
        output_tokens=tokens if isinstance(tokens, int) else chunks,
        prompt_tokens=usage.get("prompt_tokens"),
    )


def _has_content(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta") or {}
    return bool(delta.get("content") or delta.get("reasoning_content") or choice.get("text"))
