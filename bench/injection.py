"""Prompt-injection detector: held-out quality of the shipped weights, and scan latency.

Quality is re-computed from `src/modelway/guardrails/injection_weights.json` on the
held-out 20% of the training file, split exactly as `tools/train_injection.py` splits it
(same seed, read from the weights' metadata). Latency is `InjectionDetector.scan` on
texts of 200, 2,000 and 20,000 characters cut from the held-out benign rows (English
prose, role-play and Q&A), median and p99 over `--calls` calls, one thread.

    .venv/bin/python bench/injection.py [--data ../shared/datasets/injection/train.jsonl]
        [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from train_injection import (
    DEFAULT_DATA,
    detector_scores,
    labels,
    load_rows,
    model_scores,
    report,
    split,
)

from modelway.guardrails import injection_rules
from modelway.guardrails.injection import InjectionDetector
from modelway.guardrails.injection_model import InjectionModel

SIZES = (200, 2_000, 20_000)


def quality(model: InjectionModel, data: Path) -> None:
    seed = int(model.metadata["split"]["seed"])
    _, held = split(load_rows(data), seed)
    y = labels(held)
    t = model.threshold
    print(
        f"held-out rows: {len(held)} ({int(y.sum())} injection, {int((~y).sum())} benign), "
        f"seed {seed}, threshold {t:.4f}"
    )
    print(
        f"{'':16} {'ROC AUC':>8} {'R@1%FPR':>8} {'R@3%FPR':>8} {'prec@t':>8} {'recall@t':>8}"
        f" {'FPR@t':>8}"
    )
    combined = detector_scores(model, t, held)
    for name, scores in (("model", model_scores(model, held)), ("model + rules", combined)):
        r = report(y, scores, t)
        at = r["at_threshold"]
        print(
            f"{name:16} {r['roc_auc']:8.4f} {r['recall_at_1pct_fpr']:8.3f} "
            f"{r['recall_at_3pct_fpr']:8.3f} {at['precision']:8.3f} {at['recall']:8.3f} "
            f"{at['fpr']:8.3f}"
        )
    hits = np.array([bool(injection_rules.match(r["text"])) for r in held])
    print(
        f"{'rules alone':16} {'':8} {'':8} {'':8} {(hits & y).sum() / max(1, hits.sum()):8.3f} "
        f"{(hits & y).sum() / y.sum():8.3f} {(hits & ~y).sum() / (~y).sum():8.3f}"
    )
    for name, thr in model.thresholds.items():
        at = report(y, combined, thr)["at_threshold"]
        print(
            f"model + rules at {name} ({thr:.4f}): precision {at['precision']:.3f}, "
            f"recall {at['recall']:.3f}, FPR {at['fpr']:.3f}"
        )


def latency(model: InjectionModel, data: Path, calls: int) -> None:
    detector = InjectionDetector(model=model)
    _, held = split(load_rows(data), int(model.metadata["split"]["seed"]))
    corpus = "\n\n".join(r["text"] for r in held if r["label"] == "benign")
    while len(corpus) < max(SIZES):
        corpus += "\n\n" + corpus
    print(f"\nInjectionDetector.scan latency, {calls} calls per size (microseconds)")
    print(f"{'chars':>7} {'p50':>9} {'p99':>9}")
    for size in SIZES:
        text = corpus[:size]
        n = calls if size < 20_000 else max(50, calls // 10)
        for _ in range(min(50, n)):
            detector.scan(text)
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            detector.scan(text)
            samples.append((time.perf_counter() - start) * 1e6)
        samples.sort()
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        print(f"{size:>7} {statistics.median(samples):9.0f} {p99:9.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--calls", type=int, default=2_000)
    args = parser.parse_args()
    model = InjectionModel.load()
    quality(model, args.data)
    latency(model, args.data, args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
