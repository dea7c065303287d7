"""A running gateway: is it ready, and does it serve its metrics?"""

from __future__ import annotations

import httpx

from modelway.doctor.findings import Finding, Status


async def check_gateway(url: str, seconds: float) -> list[Finding]:
    base = url.rstrip("/")
    findings: list[Finding] = []
    async with httpx.AsyncClient(timeout=seconds) as client:
        ready = await client.get(f"{base}/health/ready")
        if ready.status_code == 200:
            findings.append(Finding(Status.PASS, "gateway ready", f"{base}/health/ready: 200"))
        else:
            findings.append(
                Finding(
                    Status.FAIL,
                    "gateway ready",
                    f"{base}/health/ready: {ready.status_code} {ready.text.strip()[:200]}",
                )
            )
        metrics = await client.get(f"{base}/metrics")
        if metrics.status_code == 200 and "modelway_" in metrics.text:
            findings.append(Finding(Status.PASS, "gateway metrics", f"{base}/metrics: 200"))
        else:
            findings.append(
                Finding(
                    Status.FAIL,
                    "gateway metrics",
                    f"{base}/metrics: {metrics.status_code}, no modelway_ metrics",
                )
            )
    return findings
