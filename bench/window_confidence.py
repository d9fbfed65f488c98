"""Probe: how much scoring does `eval_confidence` save, and what does it cost in accuracy?

Scores every window of a run's model on some labelled rows once, then replays the reading rule of
`core.predictor.read_windows` (end first, then start, then the middle; stop once one label reaches
p) for each threshold from those cached probabilities, so a sweep costs one scoring pass. The first
line of the output is the baseline measured in the same run: every window read (`confidence` 1.0).
`tokens` is the share of the baseline's tokens each threshold reads, which is what scoring time
follows. Prints one JSON object. docs/experiments.md, "What offline-quick measures", quotes it:

    # the threshold was chosen on IMDB train rows no stage trains on, not on the test rows
    python bench/window_confidence.py --run PIPELINE.target --split train --rows 20000:22000
    python bench/window_confidence.py --run PIPELINE.target --rows 0:2000      # IMDB test[:2000]
    # combine the windows by their mean log-odds instead of core's mean probability
    python bench/window_confidence.py --run PIPELINE.source --split train --rows 20000:22000 --max-length 64 --windows 6 --average log-odds
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data import load_eval_examples  # noqa: E402
from core.predictor import Predictor, read_windows, reading_order  # noqa: E402


def read_windows_log_odds(owner: np.ndarray, n_texts: int, score, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """`core.predictor.read_windows`'s order and stopping rule (end, start, then the middle; stop once one label
    reaches `confidence`), with the windows combined by their mean log-odds instead of their mean probability."""
    order = reading_order(owner, n_texts)
    p = score(np.arange(len(owner)))[:, 1].astype(np.float64) if confidence >= 1.0 else None
    total, reads = np.zeros(n_texts), np.zeros(n_texts, dtype=np.int64)
    for t, windows in enumerate(order):
        for w in windows:
            pw = p[w] if p is not None else float(score(np.asarray([w]))[0, 1])
            total[t] += np.log(pw + 1e-7) - np.log(1 - pw + 1e-7)
            reads[t] += 1
            if confidence < 1.0 and 1 / (1 + np.exp(-abs(total[t] / reads[t]))) >= confidence:
                break
    positive = 1 / (1 + np.exp(-total / reads))
    return np.stack([1 - positive, positive], axis=1), reads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="run id (or folder) whose model is scored")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imdb"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--rows", default="0:2000", help="a:b, rows of the split")
    ap.add_argument("--text-fields", default="text")
    ap.add_argument("--max-length", type=int, default=112, help="tokens per window")
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--confidences", default="0.8,0.85,0.88,0.9,0.92,0.95")
    ap.add_argument("--average", choices=("probability", "log-odds"), default="probability",
                    help="how a review's windows are combined: core's mean probability, or the mean of their log-odds")
    args = ap.parse_args()

    a, b = (int(x) for x in args.rows.split(":"))
    examples = load_eval_examples(args.data, args.split, args.text_fields.split(","), "label", rows=(a, b))
    predictor = Predictor.from_run(args.run, max_length=args.max_length, windows=args.windows, confidence=1.0)
    t0 = time.time()
    ids, owner = predictor.encoder.windows(list(examples.texts), args.windows)
    cached = predictor.score_ids(ids)  # every window once
    seconds = time.time() - t0
    lengths = np.asarray([len(x) for x in ids])

    def replay(confidence: float) -> dict:
        scored: list[np.ndarray] = []

        def lookup(picked: np.ndarray) -> np.ndarray:
            scored.append(picked)
            return cached[picked]

        if args.average == "log-odds":
            probs, reads = read_windows_log_odds(owner, len(examples), lookup, confidence)
        else:
            probs, reads = read_windows(owner, len(examples), lookup, confidence)
        tokens = lengths[np.concatenate(scored)].sum() / lengths.sum()
        return {"confidence": confidence, "accuracy": round(float((probs.argmax(1) == examples.labels).mean()), 4),
                "windows_read": round(float(reads.mean()), 3), "tokens": round(float(tokens), 3)}

    rows = [replay(1.0)] + [replay(float(c)) for c in args.confidences.split(",")]
    out = {"run": args.run, "data": examples.source, "n": len(examples), "max_length": args.max_length,
           "windows": args.windows, "average": args.average, "scoring_s_all_windows": round(seconds, 1), "rows": rows}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
