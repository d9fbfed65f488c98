"""What a model's predictions measure: accuracy and F1, per group, calibration (ECE, Brier, NLL, the temperature
fitted on validation), and the notes a one-label result needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import INFERENCE_FILE
from .data import LABEL_NAMES


# ---------------------------------------------------------------------------------------
def classification_metrics(labels: np.ndarray, preds: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 and the 2x2 confusion matrix (rows: true label, columns: predicted)."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    confusion = np.zeros((2, 2), dtype=int)
    np.add.at(confusion, (labels, preds), 1)
    f1s = []
    for c in (0, 1):
        tp = confusion[c, c]
        denom = confusion[c, :].sum() + confusion[:, c].sum()
        f1s.append(2 * tp / denom if denom else 0.0)
    return {"accuracy": float((labels == preds).mean()) if len(labels) else 0.0, "f1": float(np.mean(f1s)),
            "n": int(len(labels)), "confusion": confusion.tolist()}


def accuracy_by_group(right: np.ndarray, groups: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Accuracy and count per value of `groups` (a column such as Amazon's `domain`), given which
    predictions were right."""
    right, groups = np.asarray(right, dtype=bool), np.asarray([str(g) for g in groups])
    return {g: {"accuracy": round(float(right[groups == g].mean()), 4), "n": int((groups == g).sum())}
            for g in sorted(set(groups))}


def single_label(confusion: list[list[int]] | None) -> str | None:
    """The one label every scored review has (rows of the confusion matrix: the true labels), else None. Such a
    score only says how often the model gives that label: the first rows of a split sorted by label (the Hub's
    imdb) cut by max_eval_samples, most likely."""
    present = [LABEL_NAMES[i] for i, row in enumerate(confusion or []) if sum(row)]
    return present[0] if len(present) == 1 else None


def single_prediction(confusion: list[list[int]] | None) -> str | None:
    """The one label the model gave every scored review, where the reviews have both labels, else None (columns of
    the confusion matrix: the predictions). A model that has not learnt to tell the labels apart (too few steps,
    a learning rate too high or too low) says the same thing to every review, and its accuracy is then only the
    share of that label: 0.5 on a balanced test, which reads like a bad model rather than no model."""
    if not confusion or single_label(confusion):
        return None
    given = [LABEL_NAMES[j] for j in range(len(confusion[0])) if sum(row[j] for row in confusion)]
    return given[0] if len(given) == 1 else None


def one_answer_note(metrics: dict[str, Any]) -> str:
    """What an evaluation's figures mean when its model gave every review the same label, else ""."""
    label = single_prediction(metrics.get("confusion"))
    return (f"the model says {label} for all {metrics['n']} reviews: it has not learnt to tell the labels apart, so "
            f"its accuracy is only the share of {label} reviews (train it on more reviews or for more steps, or at "
            "another learning rate)") if label else ""


# ---------------------------------------------------------------------------------------
# Calibration: how far to trust a probability
CALIBRATION_BINS = 15


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): temperature scaling of a review's final probabilities. For one window that is exactly
    softmax(logits / T); for several it scales their average, so the label (the argmax) never changes."""
    if temperature == 1.0 or not len(probs):
        return probs
    logp = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    picked = np.clip(probs[np.arange(len(labels)), labels].astype(np.float64), 1e-12, 1.0)
    return float(-np.log(picked).mean()) if len(labels) else 0.0


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Expected calibration error over `bins` equal-width bins of confidence (the predicted label's probability;
    bin i holds confidences in (i/bins, (i+1)/bins], the first also 0), the Brier score of P(positive), the NLL, and
    the reliability diagram's bins: each non-empty bin's count, mean confidence and accuracy."""
    labels = np.asarray(labels)
    if not len(labels):
        return {"ece": 0.0, "brier": 0.0, "nll": 0.0, "reliability": []}
    confidence = probs.max(axis=1).astype(np.float64)
    right = probs.argmax(axis=1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        conf, acc = float(confidence[inside].mean()), float(right[inside].mean())
        ece += inside.mean() * abs(acc - conf)
        table.append({"lo": round(b / bins, 4), "hi": round((b + 1) / bins, 4), "n": int(inside.sum()),
                      "confidence": round(conf, 4), "accuracy": round(acc, 4)})
    brier = float(np.mean((probs[:, 1].astype(np.float64) - (labels == 1)) ** 2))
    return {"ece": round(float(ece), 5), "brier": round(brier, 5), "nll": round(nll(probs, labels), 5),
            "reliability": table}


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the NLL of `with_temperature(probs, T)`. The NLL is convex in 1/T, so a
    ternary search over log(1/T) in [1/20, 20] finds it; T=1 where there is nothing to fit."""
    labels = np.asarray(labels)
    if len(labels) < 2 or len(np.unique(labels)) < 2:
        return 1.0
    lo, hi = np.log(1 / 20), np.log(20)
    for _ in range(80):
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if nll(with_temperature(probs, float(np.exp(-a))), labels) <= nll(with_temperature(probs, float(np.exp(-b))), labels):
            hi = b
        else:
            lo = a
    return round(float(np.exp(-(lo + hi) / 2)), 4)


def saved_temperature(model_dir: str | Path) -> float:
    from .runs import read_json

    saved = read_json(Path(model_dir) / INFERENCE_FILE, {}) or {}
    return float((saved.get("calibration") or {}).get("temperature") or 1.0)


