"""What a check found, running a check under a timeout, and the table of findings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from enum import Enum


class Status(Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    status: Status
    check: str
    detail: str


async def bounded(check: str, work: Awaitable[list[Finding]], seconds: float) -> list[Finding]:
    """The findings of ``work``, or one failure when it raises or overruns ``seconds``."""
    try:
        return await asyncio.wait_for(work, seconds)
    except TimeoutError:
        return [Finding(Status.FAIL, check, f"no answer within {seconds:g} s")]
    except Exception as exc:  # a check that breaks reports the failure, never crashes
        return [Finding(Status.FAIL, check, describe_error(exc))]


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def table(findings: Sequence[Finding]) -> str:
    width = max((len(f.check) for f in findings), default=5)
    lines = [f"{'STATUS':<6}  {'CHECK':<{width}}  DETAIL"]
    for f in findings:
        lines.append(f"{f.status.value.upper():<6}  {f.check:<{width}}  {f.detail}")
    counts = {s: sum(1 for f in findings if f.status is s) for s in Status}
    lines.append(
        f"\n{counts[Status.PASS]} passed, {counts[Status.WARN]} warning(s), "
        f"{counts[Status.FAIL]} failed"
    )
    return "\n".join(lines)
