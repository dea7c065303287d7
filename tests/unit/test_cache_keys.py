"""Cache keys: what changes an answer changes the key, what does not leaves it alone,
and tenants never share a key."""

from __future__ import annotations

from typing import Any

import pytest

from modelway.access.principal import Principal
from modelway.cache.keys import (
    controls_of,
    exact_key,
    last_user_text,
    reproducible,
    scope_of,
    semantic_filter,
)
from modelway.config_cache import CachePolicy
from modelway.protocol.errors import BadRequest
from modelway.protocol.openai_chat import ChatRequest

BASE: dict[str, Any] = {
    "model": "g",
    "temperature": 0,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
}


def req(**changes: Any) -> ChatRequest:
    return ChatRequest.model_validate({**BASE, **changes})


def key(**changes: Any) -> str:
    return exact_key("g", "team:t1", req(**changes))


def test_delivery_fields_do_not_change_the_key() -> None:
    same = [
        key(stream=True),
        key(stream=True, stream_options={"include_usage": True}),
        key(user="someone"),
        key(metadata={"cache_ttl": "60"}),
    ]
    assert set(same) == {key()}


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.5},
        {"top_p": 0.5},
        {"seed": 3},
        {"max_tokens": 10},
        {"stop": ["\n"]},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"response_format": {"type": "json_object"}},
        {"n": 2},
        {"logit_bias": {"50256": -100}},
        {"reasoning_effort": "high"},  # unknown to the gateway, passed to the upstream
        {"messages": [{"role": "user", "content": "What is the capital of France?"}]},
    ],
)
def test_what_changes_an_answer_changes_the_key(change: dict[str, Any]) -> None:
    assert key(**change) != key()


def test_model_group_and_scope_are_part_of_the_key() -> None:
    r = req()
    assert exact_key("g", "team:t1", r) != exact_key("g", "team:t2", r)
    assert exact_key("g", "team:t1", r) != exact_key("h", "team:t1", r)


def test_scopes() -> None:
    team = CachePolicy(scope="team")
    alice = Principal(key_id="k1", team_id="t1", role="user")
    assert scope_of(team, alice) == "team:t1"
    assert scope_of(CachePolicy(scope="key"), alice) == "key:k1"
    assert scope_of(CachePolicy(scope="global"), alice) == "global"
    assert scope_of(team, None) == "global"  # authentication off: one tenant
    # Keys made without a team land in the default team, which is not a tenant.
    loner = Principal(key_id="k2", team_id="default", role="user")
    assert scope_of(team, loner) == "key:k2"


def test_semantic_filter_ignores_only_the_last_user_message() -> None:
    other_question = req(
        messages=[BASE["messages"][0], {"role": "user", "content": "Capital of Germany?"}]
    )
    assert semantic_filter("g", "s", req()) == semantic_filter("g", "s", other_question)
    other_system = req(messages=[{"role": "system", "content": "Be verbose."}, BASE["messages"][1]])
    assert semantic_filter("g", "s", req()) != semantic_filter("g", "s", other_system)
    assert semantic_filter("g", "s", req()) != semantic_filter("g", "s", req(temperature=1))


def test_last_user_text_only_for_a_plain_final_user_message() -> None:
    assert last_user_text(req()) == "What is the capital of France?"
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    with_image = req(
        messages=[{"role": "user", "content": [{"type": "text", "text": "What?"}, image]}]
    )
    assert last_user_text(with_image) is None
    after_tool = req(
        messages=[
            *BASE["messages"],
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
        ]
    )
    assert last_user_text(after_tool) is None


def test_reproducible_means_temperature_zero_or_a_seed() -> None:
    assert reproducible(req())
    assert reproducible(req(temperature=0.7, seed=1))
    assert not reproducible(req(temperature=0.7))
    assert not reproducible(req(temperature=None))


def test_controls_from_headers_and_metadata() -> None:
    r = req()
    assert controls_of({}, r).lookup and controls_of({}, r).store
    c = controls_of({"cache-control": "no-cache"}, r)
    assert not c.lookup and c.store
    c = controls_of({"cache-control": "No-Store, no-cache"}, r)
    assert not c.lookup and not c.store
    assert controls_of({"x-modelway-cache-ttl": "90"}, r).ttl_seconds == 90
    from_meta = controls_of({}, req(metadata={"cache_control": "no-store", "cache_ttl": "5"}))
    assert not from_meta.store and from_meta.ttl_seconds == 5
    header_wins = controls_of(
        {"cache-control": "max-age=0"}, req(metadata={"cache_control": "no-store"})
    )
    assert header_wins.store


@pytest.mark.parametrize("ttl", ["0", "-1", "soon", "nan", "inf", "99999999"])
def test_a_bad_ttl_is_a_clear_400(ttl: str) -> None:
    with pytest.raises(BadRequest) as caught:
        controls_of({"x-modelway-cache-ttl": ttl}, req())
    assert caught.value.code == "invalid_cache_ttl"
