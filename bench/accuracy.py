"""Accuracy and wall time of a pipeline preset, beside the TF-IDF + logistic regression baseline
measured in the same run on the same rows. Prints one JSON object.

    python bench/accuracy.py --preset offline-quick [--set target.max_train_samples=2000 ...]
    python bench/accuracy.py --preset offline-full --keep /tmp/full --no-tfidf   # on a GPU machine
    python bench/accuracy.py --preset offline-full --tfidf-only                  # its reference, on any CPU

The baseline follows ../shared/data/README.md: word 1-2-grams, min_df 2, sublinear tf, C=4.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fit_tfidf(train_cfg):
    """TF-IDF word 1-2-grams (min_df 2, sublinear tf) + logistic regression (C 4) on a stage's training rows (the
    first N of its train split, as the model saw them); returns a function from texts to predicted labels."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from core.data import load_splits

    splits = load_splits(train_cfg)
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    clf = LogisticRegression(C=4, max_iter=2000).fit(vec.fit_transform(splits.train.texts), splits.train.labels)
    return lambda texts: clf.predict(vec.transform(texts))


def tfidf_baseline(pcfg) -> dict:
    from core.data import load_test_split

    def fit_score(train_cfg, tests):
        predict = fit_tfidf(train_cfg)
        return {name: round(float((predict(ex.texts) == ex.labels).mean()), 4) for name, ex in tests.items()}

    src_test, tgt_test = load_test_split(pcfg.source), load_test_split(pcfg.target)
    # Trained on the same rows as the model's stages (the first N of each train split).
    out = fit_score(pcfg.source, {"source": src_test, "target_zero_shot": tgt_test})
    out.update({"target_finetuned": fit_score(pcfg.target, {"t": tgt_test})["t"]})
    return out


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="offline-quick")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--keep", metavar="DIR", help="keep the runs in DIR (default: a temporary folder)")
    ap.add_argument("--no-tfidf", action="store_true",
                    help="skip the TF-IDF reference (it is CPU work: on a borrowed GPU, run --tfidf-only elsewhere)")
    ap.add_argument("--tfidf-only", action="store_true", help="only the TF-IDF reference on the preset's rows")
    args = ap.parse_args()

    from core.config import load_preset

    pcfg = load_preset(args.preset).with_overrides(dict(s.split("=", 1) for s in args.sets))
    if args.tfidf_only:
        t0 = time.time()
        print(json.dumps({"preset": args.preset, "overrides": args.sets, "tfidf_baseline": tfidf_baseline(pcfg),
                          "wall_s": round(time.time() - t0, 1)}, indent=2))
        return 0
    home = args.keep or tempfile.mkdtemp(prefix="bench-lab-")
    cmd = [sys.executable, "-m", "core", "pipeline", "--preset", args.preset, "--json"]
    for s in args.sets:
        cmd += ["--set", s]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "SENTIMENT_LAB_HOME": home})
    wall = time.time() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    baseline = {} if args.no_tfidf else tfidf_baseline(pcfg)
    rows = {r["name"]: r for r in result["rows"]}
    print(json.dumps({
        "preset": args.preset, "overrides": args.sets, "wall_s": round(wall, 1), "pipeline_wall_s": result["wall_s"],
        "peak_rss_mb": round(peak_mb), "cpu_count": os.cpu_count(), "device": _device(), "runs": home,
        "rows": {name: {"accuracy": r["accuracy"], "f1": r["f1"], "n": r["n"], "data": f"{r['dataset']}:{r['split']}",
                        "tfidf_baseline": baseline.get(name),
                        "beats_baseline": None if baseline.get(name) is None else r["accuracy"] >= baseline[name]}
                 for name, r in rows.items()},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
