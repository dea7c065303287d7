"""Marks a request confidential when the client says so.

A confidential request is only ever sent to deployments tagged ``private`` (routing
enforces it on every attempt, retry and fallback). Key and team policies and content
classifiers mark requests through the same ``ctx.data_class``.
"""

from __future__ import annotations

from modelway.pipeline.context import RequestContext, Result
from modelway.pipeline.stage import Next
from modelway.protocol.errors import BadRequest

HEADER = "x-modelway-data-class"
CLASSES = ("public", "confidential")


class DataClassification:
    async def __call__(self, ctx: RequestContext, call_next: Next) -> Result:
        declared = ctx.headers.get(HEADER)
        if declared is not None:
            value = declared.strip().lower()
            if value not in CLASSES:
                raise BadRequest(f"{HEADER} must be 'public' or 'confidential'", param=HEADER)
            if value == "confidential":
                ctx.data_class = "confidential"
        return await call_next(ctx)
