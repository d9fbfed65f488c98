"""Evaluation: a model scored on a dataset (the eval job, `python -m core eval`, the pipeline's rows), its figures
saved under a run's evals/ and read back."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Callable

from .config import INFERENCE_FILE, EvalConfig
from .data import LABEL_NAMES, Examples
from .metrics import (accuracy_by_group, calibration, classification_metrics, fit_temperature, nll, one_answer_note,
                      with_temperature)
from .predictor import Predictor
from .runs import RunDir, now, write_json_atomic


def eval_name(source: str) -> str:
    """`imdb:test[:2000]` -> `imdb-test-2000`: a folder name under evals/."""
    return re.sub(r"[^A-Za-z0-9]+", "-", source).strip("-").lower() or "eval"


def evaluate(predictor: Predictor, examples: Examples, run: RunDir | None = None, name: str | None = None) -> dict[str, Any]:
    """Score `examples`; with `run`, save metrics.json and predictions.csv under run/evals/<name>/.
    Where the data has a grouping column (`examples.groups`: Amazon's product domain), also the accuracy
    per group (`group_field`, `by_group`)."""
    t0 = now()
    raw, reads = predictor.read(examples.texts)
    probs = with_temperature(raw, predictor.temperature)
    preds = raw.argmax(axis=1)  # the same as probs'
    metrics = classification_metrics(examples.labels, preds)
    metrics.update(calibration(probs, examples.labels), temperature=predictor.temperature)
    if predictor.temperature != 1.0:  # and before the temperature: what calibration changed
        before = calibration(raw, examples.labels)
        metrics.update({f"{k}_uncalibrated": before[k] for k in ("ece", "brier", "nll", "reliability")})
    if examples.groups is not None:
        metrics.update(group_field=examples.group_field,
                       by_group=accuracy_by_group(preds == examples.labels, examples.groups))
    r = predictor.reading
    metrics.update(dataset=examples.source, seconds=round(now() - t0, 2), max_length=r.max_length,
                   truncation=r.truncation, windows=r.windows, confidence=r.confidence,
                   precision=predictor.precision.name, windows_read=round(float(reads.mean()), 3) if len(reads) else 0.0,
                   model=predictor.name, skipped_empty=len(examples.skipped),
                   skipped_rows=[int(r) for r in examples.skipped[:100]])
    if run is not None:
        folder = run.evals_dir / (name or eval_name(examples.source))
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["row", "label", "predicted", "p_positive", "probability", "p_positive_uncalibrated",
                             "text"])
            for i in range(len(examples)):
                writer.writerow([int(examples.rows[i]), LABEL_NAMES[int(examples.labels[i])], LABEL_NAMES[int(preds[i])],
                                 round(float(probs[i, 1]), 6), round(float(probs[i].max()), 6),
                                 round(float(raw[i, 1]), 6), examples.texts[i][:400]])
        metrics["predictions"] = str(folder / "predictions.csv")
        write_json_atomic(folder / "metrics.json", metrics)
    return metrics


def evaluate_config(cfg: EvalConfig, save_to: RunDir | None = None, name: str | None = None,
                    log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Examples]:
    """Load `cfg`'s data and its run's model, score, and (with `save_to`) save under save_to/evals/<name>/
    (default: named after the data).
    `python -m core eval` and the background eval job both come here."""
    from .data import load_eval_examples
    from .modeling import resolve_precision

    resolve_precision(cfg.precision)  # fp16 without a GPU: said before any data is read
    model_run = RunDir.find(cfg.run, anywhere=True)
    examples = load_eval_examples(cfg.dataset, cfg.split, cfg.text_fields, cfg.label_field, cfg.max_samples,
                                  cfg.dataset_config, by=cfg.by, samples_per_class=cfg.samples_per_class)
    if log is not None:
        log(f"data: {examples.source}, {len(examples)} reviews {examples.label_counts()}")
        if examples.skipped_note():
            log(examples.skipped_note())
        if one_class := examples.one_class_note():
            log(f"note: {one_class}")
    predictor = Predictor.from_run(str(model_run.path), batch_size=cfg.batch_size, precision=cfg.precision,
                                   **cfg.reading)
    if log is not None:
        log(f"model: {model_run.run_id}, scored as {predictor.scoring}, precision {predictor.precision.name} "
            f"({predictor.precision.why})")
    return evaluate(predictor, examples, save_to, name), examples


def run_eval(cfg: EvalConfig, run: RunDir, resume: bool = False) -> dict[str, Any]:
    """The eval job's body, in its worker process: score, and keep everything in the job's own folder
    (evals/<data>/metrics.json and predictions.csv; the figures in status.json). Never leaves it 'running'."""
    run.mark_worker()
    run.update_status(state="running", phase=f"scoring {cfg.dataset} ({cfg.split})", error=None,
                      started_at=run.status().get("started_at") or now())
    try:
        metrics, _ = evaluate_config(cfg, save_to=run, log=run.log)
    except Exception as exc:
        run.fail(exc)
        raise
    summary = {k: metrics[k] for k in ("accuracy", "f1", "n", "dataset", "windows_read", "skipped_empty")}
    run.log(f"{metrics['dataset']}: accuracy {metrics['accuracy']:.4f}  f1 {metrics['f1']:.4f}  n={metrics['n']} "
            f"({metrics['seconds']} s)")
    if note := one_answer_note(metrics):
        run.log(f"note: {note}")
    return run.update_status(state="completed", metrics=summary, ended_at=now())  # a finished run has no phase


def wrong_predictions(predictions_csv: str | Path):
    """The reviews an evaluation got wrong, the surest mistakes first: where a model is confidently wrong is
    the place to look for what the new domain says differently (a film's "unpredictable" is praise, a
    product's a complaint)."""
    import pandas as pd

    frame = pd.read_csv(predictions_csv)
    wrong = frame[frame["predicted"] != frame["label"]]
    return wrong.sort_values("probability", ascending=False, kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------
# The eval kind's check and results (core/kinds.py)
def check_eval(cfg: EvalConfig) -> EvalConfig:
    """The model run exists and has a model, the data can be found; a run id prefix becomes the id."""
    from .data import preflight_dataset

    model_run = RunDir.find(cfg.run, anywhere=True)
    model_run.require_model()
    preflight_dataset(cfg.dataset)
    return cfg.replace(run=model_run.run_id)


def public_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's every figure (accuracy, F1, calibration, per group, ...), without the chart data."""
    return {k: v for k, v in metrics.items() if k not in ("reliability", "reliability_uncalibrated")}


def metrics_text(m: dict[str, Any]) -> str:
    text = f"{m['dataset']}: accuracy {m['accuracy']:.4f}  f1 {m['f1']:.4f}  n={m['n']}"
    if m.get("ece") is not None:
        text += f"  ece {m['ece']:.4f}"
    if m.get("by_group"):
        field = m["group_field"]
        text += "".join(f"\n  {field}={g}: accuracy {v['accuracy']:.4f}  n={v['n']}" for g, v in m["by_group"].items())
    return text


def report(run: RunDir, **_: Any):
    """`results EVAL_JOB`: what the evaluation measured, once it has."""
    from .kinds import Report

    state = run.status().get("state")
    found = list(run.evals().values())
    if not found:
        return Report({"run_id": run.run_id, "state": state}, f"No figures yet: the evaluation is {state}.")
    m = public_metrics(found[0])
    notes = [n for n in [one_answer_note(m)] if n]
    return Report({"run_id": run.run_id, "state": state, **m}, metrics_text(m), notes)


def calibrate(predictor: Predictor, validation: Examples, model_dir: str | Path) -> dict[str, Any]:
    """Fit the model's temperature on the validation split (never on test), save it beside the model
    (`sentiment_lab.json`'s `calibration`), and set it on `predictor`. Returns what was fitted."""
    from .runs import read_json

    probs, _ = predictor.read(validation.texts)
    temperature = fit_temperature(probs, validation.labels)
    fitted = {"temperature": temperature, "fitted_on": validation.source, "n": len(validation),
              "nll_before": round(nll(probs, validation.labels), 5),
              "nll_after": round(nll(with_temperature(probs, temperature), validation.labels), 5),
              "ece_before": calibration(probs, validation.labels)["ece"],
              "ece_after": calibration(with_temperature(probs, temperature), validation.labels)["ece"]}
    path = Path(model_dir) / INFERENCE_FILE
    write_json_atomic(path, {**(read_json(path, {}) or {}), "calibration": fitted})
    predictor.temperature = temperature
    return fitted
