"""Probe: which source-stage settings of a pipeline preset carry best to the target, chosen on target rows
that no stage scores the pipeline on?

Trains the preset's source stage exactly as the pipeline does (`core.training.train_run`, the same
RunConfig with this variant's `--set` overrides), then scores the model on a range of the *target's
train split* (held-out rows: the zero-shot row of the pipeline is scored on the test split, which this
probe never reads) at the target stage's reading, with 1 and with N windows. Prints one JSON line, so
several variants can run side by side (on a GPU they share the card) and a driver can pick one:

    python bench/source_sweep.py --preset offline-full --set learning_rate=3e-5 --rows 20000:24884
    python bench/source_sweep.py --preset offline-full --set seed=1          # the spread of one seed

docs/experiments.md, "What offline-full measures", quotes it. The source test accuracy is the run's own (Amazon test).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="offline-full")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                    help="over the preset: FIELD=V for the source stage, target.FIELD=V for the target rows' reading")
    ap.add_argument("--rows", default="20000:24884", help="a:b, rows of the target's train split to score")
    ap.add_argument("--windows", type=int, default=2, help="also score with up to N windows (1 is always scored)")
    ap.add_argument("--home", help="artifacts folder for the run (default: a temporary one)")
    args = ap.parse_args()

    # before core is imported: core.runs reads it for the artifacts folder
    os.environ["SENTIMENT_LAB_HOME"] = args.home or tempfile.mkdtemp(prefix="sweep-lab-")
    from core.cli import parse_assignments
    from core.config import load_preset
    from core.data import load_eval_examples
    from core.predictor import Predictor
    from core.runs import RunDir
    from core.training import train_run

    try:
        pcfg = load_preset(args.preset).with_overrides(parse_assignments(args.sets))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    src, tgt = pcfg.source, pcfg.target
    run = RunDir.for_id("source")
    t0 = time.time()
    status = train_run(src, run)
    train_s = time.time() - t0

    a, b = (int(x) for x in args.rows.split(":"))
    held_out = load_eval_examples(tgt.dataset, tgt.train_split, tgt.text_fields, tgt.label_field, rows=(a, b))
    out = {"preset": args.preset, "overrides": args.sets, "state": status.get("state"),
           "source_test": (status.get("metrics") or {}).get("test_accuracy"),
           "val_accuracy": (status.get("metrics") or {}).get("val_accuracy"),
           "train_and_test_s": round(train_s, 1), "held_out": held_out.source, "n": len(held_out)}
    # one model load; each window count is the same model reading the rows another way
    predictor = Predictor.from_run(run.run_id, reading=tgt.reading.replace(confidence=1.0),
                                   batch_size=tgt.eval_batch_size)
    for windows in sorted({1, args.windows}):
        t1 = time.time()
        probs, _ = predictor.reading_as(windows=windows).read(list(held_out.texts))
        out[f"held_out_w{windows}"] = round(float((probs.argmax(1) == held_out.labels).mean()), 4)
        out[f"score_w{windows}_s"] = round(time.time() - t1, 1)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
