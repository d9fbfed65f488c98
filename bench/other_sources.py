"""How a pipeline's models do on reviews from sources they never saw: restaurants, hotels, apps, video games,
airlines and music (`bench/data/other_sources.csv`, 60 short reviews, 5 positive and 5 negative per source).
Prints one JSON object: each model's accuracy, overall and per source, and the reviews it got wrong, beside
TF-IDF + logistic regression trained in the same run on the same rows as the source and target stages.

    SENTIMENT_LAB_HOME=DIR python bench/other_sources.py --pipeline PIPELINE_ID

The reviews were written for this project by its developers (there is no other review data offline here):
a smoke test of out-of-domain behaviour, not a benchmark. With 60 reviews one review is 1.7 points and the
spread of an accuracy is about +-9 points, so read the gaps between models, not the decimals.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from accuracy import fit_tfidf  # noqa: E402

ROLES = {"source": "zero-shot: trained on the source only", "target": "fine-tuned on the target",
         "baseline": "target-only baseline"}


def scores(sources: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> dict:
    right = preds == labels
    return {"accuracy": round(float(right.mean()), 4),
            "by_source": {s: round(float(right[sources == s].mean()), 2) for s in sorted(set(sources))}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", required=True, help="a pipeline's run id (under SENTIMENT_LAB_HOME)")
    ap.add_argument("--data", type=Path, default=BENCH / "data" / "other_sources.csv")
    ap.add_argument("--no-tfidf", action="store_true")
    args = ap.parse_args()

    from core.config import PipelineConfig
    from core.data import LABEL_NAMES, load_eval_examples
    from core.evaluation import Predictor
    from core.runs import RunDir, read_json

    import pandas as pd

    pipe = RunDir.find(args.pipeline)
    pcfg = PipelineConfig.from_dict(read_json(pipe.path / "config.json"))
    examples = load_eval_examples(str(args.data), text_fields=["text"], label_field="label")
    sources = pd.read_csv(args.data)["source"].to_numpy()[examples.rows]
    out: dict = {"pipeline": pipe.run_id, "data": str(args.data), "n": len(examples), "models": {}}
    for stage, role in ROLES.items():
        run = RunDir.find(f"{pipe.run_id}.{stage}")
        if not run.has_model():
            continue
        predictor = Predictor.from_run(run.run_id)
        probs = predictor.predict_proba(examples.texts)
        preds = probs.argmax(axis=1)
        out["models"][stage] = {
            "role": role, "run_id": run.run_id, **scores(sources, examples.labels, preds),
            "wrong": [{"source": sources[i], "label": LABEL_NAMES[int(examples.labels[i])],
                       "p_positive": round(float(probs[i, 1]), 3), "text": examples.texts[i]}
                      for i in np.flatnonzero(preds != examples.labels)]}
    if not args.no_tfidf:  # trained on the rows the source and target stages trained on
        out["tfidf"] = {name: scores(sources, examples.labels, fit_tfidf(cfg)(examples.texts))
                        for name, cfg in (("source", pcfg.source), ("target", pcfg.target))}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
