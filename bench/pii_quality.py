"""Quality and speed of the PII and secrets detectors on generated, labelled texts.

Prints per-entity precision and recall of PIIDetector on ``-n`` texts from
``guardrail_data.pii_samples`` (PII between look-alikes: order numbers, versions,
timestamps, UUIDs, Luhn-invalid digit runs, ISBNs), the same per kind for SecretsDetector
on ``secret_samples``, then p50/p99 latency of PIIDetector + SecretsDetector on texts of
200, 2,000 and 20,000 characters, and the cost of StreamRedactor on a streamed answer.

A finding counts as correct when it overlaps a label of the same entity (kind); "exact"
is the share of correct findings whose span equals the label's.

    .venv/bin/python bench/pii_quality.py [-n 2000] [--seed 1234]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

from guardrail_data import Label, Sample, mixed_text, pii_samples, secret_samples

from modelway.guardrails.anonymizer import StreamRedactor
from modelway.guardrails.findings import Finding
from modelway.guardrails.pii import STRUCTURED_ENTITIES, PIIDetector
from modelway.guardrails.secrets import SecretsDetector


def evaluate(
    samples: Sequence[Sample], find: Callable[[str], list[Finding]], key: Callable[[Finding], str]
) -> dict[str, list[int]]:
    """entity -> [true positives, false positives, false negatives, exact spans]."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    misses: dict[str, list[str]] = defaultdict(list)
    for sample in samples:
        found = [(key(f), f.start, f.end) for f in find(sample.text)]
        matched: set[Label] = set()
        for entity, start, end in found:
            hit = next(
                (lab for lab in sample.labels
                 if lab.entity == entity and lab.start < end and start < lab.end),
                None,
            )  # fmt: skip
            if hit is None:
                counts[entity][1] += 1
                misses[f"FP {entity}"].append(sample.text[start:end])
            else:
                counts[entity][0] += 1
                counts[entity][3] += (hit.start, hit.end) == (start, end)
                matched.add(hit)
        for lab in sample.labels:
            if lab not in matched:
                counts[lab.entity][2] += 1
                misses[f"FN {lab.entity}"].append(sample.text[lab.start : lab.end])
    for what, values in sorted(misses.items()):
        print(f"  {what}: {len(values)}, e.g. {values[:4]}")
    return counts


def print_table(title: str, counts: dict[str, list[int]]) -> None:
    print(
        f"\n{title}\n{'entity':<28}{'labels':>8}{'found':>8}{'precision':>11}{'recall':>9}{'exact':>8}"
    )
    total = [0, 0, 0, 0]
    for entity, (tp, fp, fn, exact) in sorted(counts.items()):
        total = [a + b for a, b in zip(total, (tp, fp, fn, exact), strict=True)]
        print(_row(entity, tp, fp, fn, exact))
    print(_row("all (micro)", *total))


def _row(entity: str, tp: int, fp: int, fn: int, exact: int) -> str:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    exact_share = exact / tp if tp else 1.0
    return (
        f"{entity:<28}{tp + fn:>8}{tp + fp:>8}{precision:>11.3f}{recall:>9.3f}{exact_share:>8.3f}"
    )


def latency(find: Callable[[str], object], size: int, seed: int, budget_s: float = 3.0) -> str:
    texts = [mixed_text(size, seed + i) for i in range(20)]
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(times) < 50:
        for text in texts:
            started = time.perf_counter()
            find(text)
            times.append(time.perf_counter() - started)
    times.sort()
    p50 = statistics.median(times) * 1e3
    p99 = times[int(len(times) * 0.99) - 1] * 1e3
    return f"{size:>8}{len(times):>8}{p50:>10.2f}{p99:>10.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="texts per quality table")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    pii, secrets = PIIDetector(STRUCTURED_ENTITIES), SecretsDetector()

    print(f"PIIDetector on {args.n} generated texts")
    counts = evaluate(pii_samples(args.n, args.seed), pii.find, lambda f: f.entity)
    print_table("PII (structured entities)", counts)
    print(f"\nSecretsDetector on {args.n} generated texts")
    counts = evaluate(secret_samples(args.n, args.seed), secrets.find, lambda f: f.rule or "")
    print_table("Secrets (by kind)", counts)

    def both(text: str) -> list[Finding]:
        return pii.find(text) + secrets.find(text)

    print("\nLatency of PIIDetector + SecretsDetector (ms)")
    print(f"{'chars':>8}{'runs':>8}{'p50':>10}{'p99':>10}")
    for size in (200, 2_000, 20_000):
        print(latency(both, size, args.seed))
    for name, find in (("PIIDetector", pii.find), ("SecretsDetector", secrets.find)):
        print(
            f"{name} alone, 2,000 chars: {latency(find, 2_000, args.seed, 1.0).split()[2]} ms p50"
        )

    answer = mixed_text(2_000, args.seed + 99)
    started = time.perf_counter()
    redactor = StreamRedactor(both)
    chunks = [answer[i : i + 4] for i in range(0, len(answer), 4)]
    for chunk in chunks:
        redactor.feed(chunk)
    redactor.flush()
    total = time.perf_counter() - started
    print(
        f"\nStreamRedactor(PII+secrets, hold_back=64): 2,000-char answer in {len(chunks)} chunks "
        f"of 4 chars: {total * 1e3:.1f} ms total, {total / len(chunks) * 1e6:.0f} µs per chunk"
    )


if __name__ == "__main__":
    main()
