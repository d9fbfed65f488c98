"""How a pipeline's models do on reviews from sources they never saw: restaurants, hotels, apps, video games,
airlines and music (`core/other_sources.csv`, 60 short reviews, 5 positive and 5 negative per source).
Prints one JSON object: each model's accuracy, overall and per source, and the reviews it got wrong, beside
TF-IDF + logistic regression trained in the same run on the same rows as the source and target stages.

    SENTIMENT_LAB_HOME=DIR python bench/other_sources.py --pipeline PIPELINE_ID

The reviews were written for this project by its developers (there is no other review data offline here):
a smoke test of out-of-domain behaviour, not a benchmark. With 60 reviews one review is 1.7 points and the
spread of an accuracy is about +-9 points, so read the gaps between models, not the decimals.
The app's Transfer page shows the same scores ("Beyond the two domains").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from accuracy import fit_tfidf  # noqa: E402


def main() -> int:
    from core.config import PipelineConfig
    from core.data import load_eval_examples
    from core.metrics import accuracy_by_group
    from core.pipeline import OTHER_SOURCES, other_sources_scores
    from core.runs import RunDir, read_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", required=True, help="a pipeline's run id (under SENTIMENT_LAB_HOME)")
    ap.add_argument("--data", type=Path, default=OTHER_SOURCES, help="a CSV with source, label and text columns")
    ap.add_argument("--no-tfidf", action="store_true")
    args = ap.parse_args()

    pipe = RunDir.find(args.pipeline)
    models = other_sources_scores(pipe, path=args.data)
    out = {"pipeline": pipe.run_id, "data": str(args.data), "n": models[0]["n"] if models else 0,
           "models": {m.pop("stage"): m for m in models}}
    if not args.no_tfidf:  # trained on the rows the source and target stages trained on
        pcfg = PipelineConfig.from_dict(read_json(pipe.path / "config.json"))
        reviews = load_eval_examples(str(args.data), text_fields=["text"], label_field="label")
        out["tfidf"] = {}
        for name, cfg in (("source", pcfg.source), ("target", pcfg.target)):
            right = fit_tfidf(cfg)(reviews.texts) == reviews.labels
            out["tfidf"][name] = {"accuracy": round(float(right.mean()), 4),
                                  "by_source": {s: g["accuracy"] for s, g in accuracy_by_group(right, reviews.groups).items()}}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
