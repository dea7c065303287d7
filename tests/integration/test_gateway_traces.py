"""A gateway with tracing on exports a span per request and one per upstream attempt to a
real OTLP/HTTP receiver, continues the client's trace and hands it to the upstream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.integration.access_gateway import MASTER, start_gateway
from tests.integration.conftest import Mock
from tests.integration.test_metrics import metrics_config
from tests.integration.test_tracing_export import Receiver, _attributes, receiver

__all__ = ["receiver"]  # the fixture, used below

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


async def test_spans_follow_genai_conventions_and_show_each_attempt(
    upstream: Mock, receiver: Receiver, tmp_path: Path
) -> None:
    config = metrics_config(upstream, tmp_path / "state")
    config["tracing"] = {"endpoint": receiver.url, "service_name": "gateway-under-test"}
    gateway = await asyncio.to_thread(start_gateway, tmp_path, config)
    try:
        upstream.reset()
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(
                gateway.url + "/v1/chat/completions",
                json={"model": "m-retry", "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {MASTER}", "traceparent": TRACEPARENT},
            )
        assert answer.status_code == 200
        sent = [r["headers"] for r in upstream.stats()["last_requests"]]
    finally:
        await asyncio.to_thread(gateway.stop)  # shutdown flushes the span batch
    spans = [span for _, span in receiver.spans()]
    request = next(s for s in spans if s.name == "chat m-retry")
    attempts = [s for s in spans if s.parent_span_id == request.span_id]
    assert len(attempts) == 2  # the failed first try and the retry
    assert all(s.trace_id.hex() == CLIENT_TRACE for s in spans)
    attrs = _attributes(request)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "m-retry"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    deployments = sorted(_attributes(s)["modelway.deployment"] for s in attempts)
    assert deployments == ["flaky", "steady"]
    failed = next(s for s in attempts if _attributes(s)["modelway.deployment"] == "flaky")
    assert "error.type" in _attributes(failed)
    # Each upstream call carried the trace onward, from its own attempt span.
    parents = {h["traceparent"].split("-")[2] for h in sent if "traceparent" in h}
    assert parents == {s.span_id.hex() for s in attempts}
    assert all(h["traceparent"].split("-")[1] == CLIENT_TRACE for h in sent)
