"""What a cache entry is keyed on, whose it is, and what the request asks of the cache.

The exact key hashes the canonical request: every field that can change the answer
(messages, sampling, tools, response format, unknown fields passed to the upstream),
none that cannot (streaming, usage options, ``user``, ``metadata``), under the model
group and the tenant scope. The semantic filter hashes the same minus the last user
message, which is compared by meaning instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from modelway.access.admin import DEFAULT_TEAM
from modelway.access.principal import Principal
from modelway.config_cache import MAX_TTL_SECONDS, CachePolicy
from modelway.protocol.errors import BadRequest
from modelway.protocol.openai_chat import ChatRequest

# Fields that change how an answer is delivered or attributed, not what it says.
_DELIVERY = frozenset({"stream", "stream_options", "user", "metadata"})


def scope_of(policy: CachePolicy, principal: Principal | None) -> str:
    """Whose entries a request sees. Keys made without a team are in the default team,
    which is not a tenant: each of them keeps its own entries under team scope."""
    if principal is None or policy.scope == "global":
        return "global"
    if policy.scope == "team" and principal.team_id not in (None, DEFAULT_TEAM):
        return f"team:{principal.team_id}"
    return f"key:{principal.key_id}"


def _canonical(req: ChatRequest, drop_last_user: bool) -> dict[str, Any]:
    body = req.model_dump(exclude=set(_DELIVERY), exclude_none=True)
    if drop_last_user:
        messages = body["messages"]
        body["messages"] = messages[: _last_user_index(req)]
    return body


def _digest(group: str, scope: str, kind: str, body: dict[str, Any]) -> str:
    data = orjson.dumps([kind, group, scope, body], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()


def exact_key(group: str, scope: str, req: ChatRequest) -> str:
    return _digest(group, scope, "exact", _canonical(req, drop_last_user=False))


def semantic_filter(group: str, scope: str, req: ChatRequest) -> str:
    """Everything but the last user message: system prompt, earlier turns, parameters."""
    return _digest(group, scope, "semantic", _canonical(req, drop_last_user=True))


def _last_user_index(req: ChatRequest) -> int:
    for i in range(len(req.messages) - 1, -1, -1):
        if req.messages[i].role == "user":
            return i
    return len(req.messages)


def last_user_text(req: ChatRequest) -> str | None:
    """The last user message's text when it is the request's last message and all text
    (an image or a later tool result makes a request unfit for a semantic match)."""
    i = _last_user_index(req)
    if i != len(req.messages) - 1:
        return None
    message = req.messages[i]
    if isinstance(message.content, list) and any(
        part.get("type") != "text" for part in message.content
    ):
        return None
    text = message.text().strip()
    return text or None


def reproducible(req: ChatRequest) -> bool:
    return req.temperature == 0 or req.seed is not None


@dataclass(frozen=True, slots=True)
class Controls:
    """The request's own say: skip the lookup, do not store, or keep for so long."""

    lookup: bool = True
    store: bool = True
    ttl_seconds: float | None = None


NO_CONTROLS = Controls()


def controls_of(headers: dict[str, str] | Any, req: ChatRequest) -> Controls:
    """From ``Cache-Control`` and ``x-modelway-cache-ttl``, or the same in ``metadata``
    (``cache_control``, ``cache_ttl``); a header wins over metadata."""
    meta = req.metadata or {}
    directive = headers.get("cache-control") or meta.get("cache_control")
    ttl_text = headers.get("x-modelway-cache-ttl") or meta.get("cache_ttl")
    if directive is None and ttl_text is None:
        return NO_CONTROLS
    words = {w.strip().lower() for w in str(directive or "").split(",")}
    ttl = _ttl(ttl_text) if ttl_text is not None else None
    return Controls(lookup="no-cache" not in words, store="no-store" not in words, ttl_seconds=ttl)


def _ttl(text: Any) -> float:
    try:
        ttl = float(text)
    except (TypeError, ValueError):
        ttl = -1.0
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise BadRequest(
            f"the cache TTL must be a number of seconds above 0 and at most {MAX_TTL_SECONDS}",
            param="x-modelway-cache-ttl",
            code="invalid_cache_ttl",
        )
    return ttl
