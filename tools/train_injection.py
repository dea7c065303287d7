"""Train the prompt-injection classifier and write src/modelway/guardrails/injection_weights.json.

    .venv/bin/python tools/train_injection.py [../shared/datasets/injection/train.jsonl]
        [--seed 20251203] [--target-fpr 0.03] [--max-weights 60000] [--dry-run]

1. Split: per label, rows are ordered by sha256(f"{seed}:{text}") and the first 20% are
   held out. The held-out rows never reach training, C selection or threshold choice.
2. Features: `modelway.guardrails.injection_model.features` (binary hashed n-grams, L2-
   normalised), one example per scoring window, each carrying its row's label and the
   weight 1/(windows in the row). Logistic regression, liblinear, class_weight balanced.
3. C: 5-fold cross-validation on the training part (folds by row), scored by the recall
   at `--target-fpr` of the row score (max over windows), ROC AUC breaking ties.
4. Threshold: out-of-fold scores of the chosen C, put through `InjectionDetector` (fold,
   rules, model) exactly as served, give the lowest threshold with at most `--target-fpr`
   false positives; the 1%, 2% and 3% points are shipped too (`thresholds`).
5. Fit on the whole training part, keep the `--max-weights` largest |weights|, round to
   4 significant digits, and report held-out metrics of the model as shipped (reloaded
   from the JSON): model alone, model + rules, rules alone.

Needs scikit-learn (a dev extra); serving does not.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from modelway.guardrails.injection import InjectionDetector, Scorer
from modelway.guardrails.injection_model import (
    WEIGHTS_FILE,
    FeatureConfig,
    InjectionModel,
    features,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "injection" / "train.jsonl"
OUTPUT = ROOT / "src" / "modelway" / "guardrails" / WEIGHTS_FILE
SEED = 20251203
HELDOUT = 0.2
C_GRID = (3.0, 10.0, 30.0, 100.0, 300.0)

Row = dict[str, str]


def load_rows(path: Path) -> list[Row]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def split(rows: list[Row], seed: int = SEED) -> tuple[list[Row], list[Row]]:
    """(training part, held-out part): stratified, order-independent, duplicates kept together."""
    train: list[Row] = []
    held: list[Row] = []
    for label in sorted({r["label"] for r in rows}):
        part = sorted(
            (r for r in rows if r["label"] == label),
            key=lambda r: hashlib.sha256(f"{seed}:{r['text']}".encode()).hexdigest(),
        )
        cut = round(len(part) * HELDOUT)
        held.extend(part[:cut])
        train.extend(part[cut:])
    held_texts = {r["text"] for r in held}
    return [r for r in train if r["text"] not in held_texts], held


def labels(rows: list[Row]) -> np.ndarray:
    return np.array([r["label"] == "injection" for r in rows], dtype=bool)


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y], s[~y]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def threshold_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float) -> float:
    """Lowest threshold (score >= t flags) with false-positive rate <= fpr."""
    neg = np.sort(s[~y])[::-1]
    k = math.floor(fpr * len(neg) + 1e-9)
    if k >= len(neg):
        return float(neg[-1])
    above = neg[k - 1] if k > 0 else 1.0
    return float((neg[k] + above) / 2) if above > neg[k] else float(np.nextafter(neg[k], 2.0))


def rates(y: np.ndarray, s: np.ndarray, t: float) -> dict[str, float]:
    flag = s >= t
    tp = int((flag & y).sum())
    fp = int((flag & ~y).sum())
    return {
        "threshold": round(t, 6),
        "precision": tp / max(1, tp + fp),
        "recall": tp / max(1, int(y.sum())),
        "fpr": fp / max(1, int((~y).sum())),
    }


def report(y: np.ndarray, s: np.ndarray, t: float) -> dict[str, Any]:
    return {
        "roc_auc": roc_auc(y, s),
        "recall_at_1pct_fpr": rates(y, s, threshold_at_fpr(y, s, 0.01))["recall"],
        "recall_at_3pct_fpr": rates(y, s, threshold_at_fpr(y, s, 0.03))["recall"],
        "at_threshold": rates(y, s, t),
    }


class _Silent:
    """A model that always says 0: the detector's score is then the rules' alone."""

    threshold = 0.5

    def score(self, text: str) -> float:
        return 0.0


SILENT = _Silent()


def detector_scores(model: Scorer, threshold: float, rows: list[Row]) -> np.ndarray:
    """What the shipped detector (fold, rules, hidden text, model) scores each row."""
    detector = InjectionDetector(threshold, model=model)
    return np.array([detector.scan(r["text"]).score for r in rows])


def model_scores(model: InjectionModel, rows: list[Row]) -> np.ndarray:
    return np.array([model.score(r["text"]) for r in rows])


class Trainer:
    def __init__(self, config: FeatureConfig, max_weights: int) -> None:
        self.config = config
        self.max_weights = max_weights

    def matrix(self, rows: list[Row]) -> tuple[Any, np.ndarray, np.ndarray]:
        from scipy.sparse import csr_matrix

        data, cols, indptr, y, w = [], [], [0], [], []
        for r in rows:
            parts = features(r["text"], self.config)
            for idx in parts:
                cols.append(idx)
                data.append(np.full(len(idx), 1.0 / math.sqrt(max(1, len(idx)))))
                indptr.append(indptr[-1] + len(idx))
                y.append(r["label"] == "injection")
                w.append(1.0 / len(parts))
        x = csr_matrix(
            (np.concatenate(data), np.concatenate(cols), np.array(indptr)),
            shape=(len(indptr) - 1, 1 << self.config.bits),
        )
        return x, np.array(y), np.array(w)

    def fit(self, rows: list[Row], c: float) -> InjectionModel:
        from sklearn.linear_model import LogisticRegression

        x, y, w = self.matrix(rows)
        clf = LogisticRegression(C=c, solver="liblinear", class_weight="balanced", max_iter=1000)
        clf.fit(x, y, sample_weight=w)
        coef = clf.coef_[0].copy()
        if np.count_nonzero(coef) > self.max_weights:
            cutoff = np.sort(np.abs(coef))[-self.max_weights]
            coef[np.abs(coef) < cutoff] = 0.0
        coef = np.array([float(f"{v:.4g}") for v in coef])
        return InjectionModel(coef, float(clf.intercept_[0]), self.config, 0.5, {})

    def out_of_fold(self, rows: list[Row], c: float, folds: int = 5) -> tuple[Any, Any]:
        """Out-of-fold scores of every training row: model alone, and model + rules."""
        from sklearn.model_selection import StratifiedKFold

        y = labels(rows)
        alone, combined = np.zeros(len(rows)), np.zeros(len(rows))
        for fit_idx, val_idx in StratifiedKFold(folds, shuffle=True, random_state=SEED).split(
            np.zeros(len(rows)), y
        ):
            model = self.fit([rows[i] for i in fit_idx], c)
            held = [rows[i] for i in val_idx]
            alone[val_idx] = model_scores(model, held)
            combined[val_idx] = detector_scores(model, 0.5, held)
        return alone, combined


def to_json(
    model: InjectionModel, threshold: float, thresholds: dict[str, float], metadata: dict[str, Any]
) -> dict[str, Any]:
    nz = np.flatnonzero(model.weights)
    deltas = np.diff(nz, prepend=0).tolist()
    return {
        "format": 1,
        "features": {
            "bits": model.config.bits,
            "char_ngrams": list(model.config.char_ngrams),
            "word_ngrams": list(model.config.word_ngrams),
            "window": model.config.window,
            "stride": model.config.stride,
            "max_windows": model.config.max_windows,
        },
        "bias": round(model.bias, 6),
        "threshold": round(threshold, 6),
        "thresholds": {name: round(t, 6) for name, t in thresholds.items()},
        "weights": {
            "encoding": "indices are deltas of sorted bucket indices (cumsum to decode)",
            "indices": deltas,
            "values": [float(f"{v:.4g}") for v in model.weights[nz]],
        },
        "metadata": metadata,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--target-fpr", type=float, default=0.03)
    parser.add_argument("--max-weights", type=int, default=60_000)
    parser.add_argument("--dry-run", action="store_true", help="do not write the weights")
    args = parser.parse_args()
    import sklearn

    rows = load_rows(args.data)
    train, held = split(rows, args.seed)
    y_train = labels(train)
    trainer = Trainer(FeatureConfig(), args.max_weights)
    print(f"rows {len(rows)}: training {len(train)}, held out {len(held)}")

    cv: dict[str, dict[str, float]] = {}
    best: tuple[float, float, float] | None = None
    oof: dict[float, tuple[Any, Any]] = {}
    for c in C_GRID:
        oof[c] = trainer.out_of_fold(train, c)
        alone = oof[c][0]
        t = threshold_at_fpr(y_train, alone, args.target_fpr)
        recall, auc = rates(y_train, alone, t)["recall"], roc_auc(y_train, alone)
        cv[str(c)] = {"recall_at_target_fpr": recall, "roc_auc": auc}
        print(f"  C={c:<6} cv recall@{args.target_fpr:.0%}fpr={recall:.3f} auc={auc:.4f}")
        if best is None or (recall, auc) > best[1:]:
            best = (c, recall, auc)
    assert best is not None
    c = best[0]
    combined_oof = oof[c][1]
    threshold = threshold_at_fpr(y_train, combined_oof, args.target_fpr)
    thresholds = {
        f"fpr_{p}pct": threshold_at_fpr(y_train, combined_oof, p / 100) for p in (1, 2, 3)
    }
    print(f"chosen C={c}, threshold {threshold:.4f} (out-of-fold, model+rules)")

    model = trainer.fit(train, c)
    metadata: dict[str, Any] = {
        "trained_at": datetime.date.today().isoformat(),
        "data": {
            "file": args.data.name,
            "sha256": hashlib.sha256(args.data.read_bytes()).hexdigest(),
            "rows": len(rows),
            "training_rows": len(train),
            "heldout_rows": len(held),
        },
        "split": {"seed": args.seed, "heldout_fraction": HELDOUT, "method": "sha256 per label"},
        "training": {
            "solver": "liblinear",
            "class_weight": "balanced",
            "C": c,
            "cv_folds": 5,
            "cv": cv,
            "target_fpr": args.target_fpr,
            "max_weights": args.max_weights,
            "sklearn": sklearn.__version__,
            "oof_at_threshold": rates(y_train, combined_oof, threshold),
        },
    }
    payload = to_json(model, threshold, thresholds, metadata)
    shipped = InjectionModel.from_dict(json.loads(json.dumps(payload)))
    y_held = labels(held)
    model_held = model_scores(shipped, held)
    combined_held = detector_scores(shipped, threshold, held)
    rules_held = detector_scores(SILENT, threshold, held)
    metadata["heldout"] = {
        "model": report(y_held, model_held, threshold),
        "model_and_rules": report(y_held, combined_held, threshold),
        "rules": rates(y_held, rules_held, 0.5),
        "model_and_rules_at": {
            name: rates(y_held, combined_held, t) for name, t in thresholds.items()
        },
    }
    print(json.dumps(metadata["heldout"], indent=2))
    if not args.dry_run:
        OUTPUT.write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")
        print(
            f"wrote {OUTPUT.relative_to(ROOT)} ({OUTPUT.stat().st_size / 1e6:.2f} MB, "
            f"{len(payload['weights']['values'])} weights)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
