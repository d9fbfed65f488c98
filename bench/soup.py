"""Probe: would several source models, averaged, carry better than one? Ensemble and weight soup.

Scores each model on the same labelled rows, then their **ensemble** (the mean of their probabilities:
N times the scoring) and their uniform **soup** (one model whose weights are the mean of theirs,
Wortsman et al. 2022: the scoring cost of one model, and a plain checkpoint a `pipeline` loads). A soup
only makes sense for models fine-tuned from the same pretrained weights with the same head
initialisation (the same `seed`), e.g. the variants `bench/source_sweep.py --home DIR` keeps. Every
model reads the rows the same way (the first model's saved reading unless overridden). Prints one
JSON object. bench/README.md, "What offline-quick measures", quotes it:

    python bench/soup.py --runs DIR_A/runs/source DIR_B/runs/source --split train --rows 20000:22000
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data import load_eval_examples  # noqa: E402
from core.evaluation import Predictor  # noqa: E402


def load(ref: str, **reading) -> Predictor:
    """A model folder, or what `Predictor.from_run` takes: a run id, an id prefix or a run folder."""
    if (Path(ref) / "model.safetensors").exists():
        return Predictor.from_folder(ref, **reading)
    return Predictor.from_run(ref, **reading)


def soup_of(predictors: list[Predictor]) -> Predictor:
    """One predictor whose weights are the uniform mean of the predictors' (same architecture required)."""
    states = [p.model.state_dict() for p in predictors]
    if any(s.keys() != states[0].keys() or any(s[k].shape != states[0][k].shape for k in s) for s in states):
        raise ValueError("models: a soup needs models of one architecture (the same weights by name and shape)")
    mean = {k: sum(s[k].float() for s in states).div(len(states)).to(states[0][k].dtype) for k in states[0]}
    first = predictors[0]
    model = copy.deepcopy(first.model)
    model.load_state_dict(mean)
    return Predictor(model, first.tokenizer, batch_size=first.batch_size, name="soup", **first.reading)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run ids, run folders or model folders (2 or more)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imdb"))
    ap.add_argument("--split", default="train", help="train: held-out rows no stage trains on (see --rows)")
    ap.add_argument("--rows", default="20000:22000", help="a:b, rows of the split")
    ap.add_argument("--text-fields", default="text")
    ap.add_argument("--max-length", type=int, default=112, help="tokens per window")
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--confidence", type=float, default=1.0, help="1.0: every window read")
    args = ap.parse_args()
    if len(args.runs) < 2:
        ap.error("--runs: give two models or more")

    a, b = (int(x) for x in args.rows.split(":"))
    examples = load_eval_examples(args.data, args.split, args.text_fields.split(","), "label", rows=(a, b))
    texts, labels = list(examples.texts), examples.labels
    reading = dict(max_length=args.max_length, windows=args.windows, confidence=args.confidence)
    predictors = [load(ref, **reading) for ref in args.runs]

    def accuracy(probs: np.ndarray) -> float:
        return round(float((probs.argmax(1) == labels).mean()), 4)

    t0 = time.time()
    probs = [p.predict_proba(texts) for p in predictors]
    out = {"data": examples.source, "n": len(examples), "reading": predictors[0].scoring,
           "models": {ref: accuracy(p) for ref, p in zip(args.runs, probs)}}
    out["ensembles"] = {"+".join(str(i) for i in combo): accuracy(np.mean([probs[i] for i in combo], axis=0))
                        for k in range(2, len(probs) + 1) for combo in itertools.combinations(range(len(probs)), k)}
    out["ensemble"] = out["ensembles"]["+".join(str(i) for i in range(len(probs)))]
    out["soup"] = accuracy(soup_of(predictors).predict_proba(texts))
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
