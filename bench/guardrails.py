"""Latency of the full input guardrail policy (hygiene, injection rules and classifier,
secrets, PII with anonymisation) on one text of 200, 2,000 and 20,000 characters.
Quality figures: bench/injection.py (held-out injection split) and bench/pii_quality.py
(generated PII and secrets with distractors).

The heap is set up as the gateway sets it up at start-up (`modelway.api.heap`: everything
loaded frozen out of the cyclic collector, young collections less often), so the figures
are those of the policy as it runs there.

    .venv/bin/python bench/guardrails.py [--runs 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from modelway.api.heap import freeze_long_lived
from modelway.config_guardrails import InjectionPolicy, InputPolicy, PIIPolicy
from modelway.guardrails.anonymizer import Placeholders
from modelway.guardrails.detectors import Detectors
from modelway.guardrails.input_policy import InputChecks, Verdict

WORDS = [
    "the",
    "report",
    "for",
    "the",
    "quarter",
    "shows",
    "steady",
    "growth",
    "in",
    "all",
    "regions",
    "and",
    "the",
    "team",
    "will",
    "review",
    "the",
    "numbers",
    "with",
    "finance",
    "next",
    "week",
    "before",
    "the",
    "board",
    "meeting",
]


def text_of(chars: int, rng: random.Random) -> str:
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < chars:
        roll = rng.random()
        if roll < 0.01:
            parts.append("jane.doe@example.org")
        elif roll < 0.015:
            parts.append("+1 415 555 2671")
        else:
            parts.append(rng.choice(WORDS))
    return " ".join(parts)[:chars]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    policy = InputPolicy(
        injection=InjectionPolicy(action="block"), pii=PIIPolicy(action="anonymize")
    )
    checks = InputChecks(policy, Detectors())
    freeze_long_lived()
    rng = random.Random(7)
    for chars in (200, 2_000, 20_000):
        texts = [text_of(chars, rng) for _ in range(20)]
        for text in texts[:5]:  # warm up: weights, regexes, phone metadata
            checks.text(text, Verdict(), Placeholders())
        samples = []
        for i in range(args.runs):
            start = time.perf_counter()
            checks.text(texts[i % len(texts)], Verdict(), Placeholders())
            samples.append(time.perf_counter() - start)
        samples.sort()
        p50 = statistics.median(samples) * 1e3
        p99 = samples[int(len(samples) * 0.99) - 1] * 1e3
        print(f"{chars:>6} chars: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
