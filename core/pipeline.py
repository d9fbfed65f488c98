"""The transfer experiment, one command:

  1. source         fine-tune the base model on the source domain (Amazon), score its test split
  2. zero-shot      score that model on the target test split (IMDB), no target training
  3. target         fine-tune the stage-1 model on the target, score the target test split
  4. forgetting     score the stage-3 model on the source test split again
  5. baseline       fine-tune the base model on the target with stage 3's exact budget

Stages are separate run folders (`<pipeline>.source`, `.target`, `.baseline`) whose status the
pipeline folder records, so a stopped or crashed pipeline resumes at the stage where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .config import PipelineConfig, Reading, RunConfig
from .data import load_test_split
from .errors import ConfigError
from .evaluation import evaluate
from .export import write_card
from .metrics import one_answer_note, single_label, single_prediction
from .predictor import Predictor
from .runs import STAGES, RunDir, error_line, now, read_json, write_json_atomic
from .training import train_run

ROW_NAMES = ("source", "target_zero_shot", "target_finetuned", "source_after_target", "target_only_baseline")
ROW_TITLES = {
    "source": "Source (after stage 1)",
    "target_zero_shot": "Target, zero-shot",
    "target_finetuned": "Target, after fine-tuning",
    "source_after_target": "Source, after target (forgetting)",
    "target_only_baseline": "Target-only baseline",
}
STAGE_STEPS = {"source": "fine-tune on the source, score its test split",
               "target_zero_shot": "score that model on the target (zero-shot)",
               "target": "fine-tune it on the target, score the target",
               "source_after_target": "score the source again (forgetting)",
               "baseline": "fine-tune the base model on the target alone"}
STAGE_ROLES = {"source": "zero-shot: trained on the source only", "target": "fine-tuned on the target",
               "baseline": "target-only baseline"}
# 60 short reviews of restaurants, hotels, apps, games, airlines and music, 5 positive and 5 negative per
# source, written for this project (no other review data is reachable offline): do the models carry beyond
# the two domains they were trained on? A smoke test, not a benchmark: one review moves it by 1.7 points.
OTHER_SOURCES = Path(__file__).with_name("other_sources.csv")


def stage_configs(pcfg: PipelineConfig, pipeline_id: str) -> dict[str, RunConfig]:
    """Stage 3 starts from stage 1's model; the baseline is stage 3 from the base model."""
    base_model = pcfg.source.model
    stages = {"source": pcfg.source.replace(name=f"{pcfg.name or 'pipeline'}: source", init_from=None),
              "target": pcfg.target.replace(name=f"{pcfg.name or 'pipeline'}: target", model=base_model,
                                            init_from=RunDir.for_id(pipeline_id).stage("source").run_id)}
    if pcfg.baseline:
        stages["baseline"] = pcfg.target.replace(name=f"{pcfg.name or 'pipeline'}: target-only baseline",
                                                 model=base_model, init_from=None)
    return stages


def run_pipeline(pcfg: PipelineConfig, pipe: RunDir, resume: bool = False) -> dict[str, Any]:
    pipe.path.mkdir(parents=True, exist_ok=True)
    if not pipe.config_path.exists():
        pipe.write_config("pipeline", pcfg.to_dict())

    def finish(wall: float) -> dict[str, Any]:
        results = write_results(pipe, pcfg, wall)
        return {"wall_s": results["wall_s"], "metrics": {r["name"]: r["accuracy"] for r in results["rows"]}}

    return run_plan(pipe, pcfg, stage_configs(pcfg, pipe.run_id), _plan(pcfg), finish)


def run_plan(pipe: RunDir, pcfg: PipelineConfig, configs: dict[str, RunConfig], plan: list,
             finish: Callable[[float], dict[str, Any]]) -> dict[str, Any]:
    """A job of stages, each a run folder `<job>.<stage>` or an evaluation, in order (a pipeline's five, a curve's
    points): stages already completed are skipped, so a stopped or killed job resumes at the stage where it was.
    `finish(wall_s)` gives the completed job's last status fields."""
    pipe.stop_flag.unlink(missing_ok=True)
    pipe.mark_worker()
    status = pipe.status()
    stages: dict[str, Any] = status.get("stages") or {}
    t0 = time.time()
    wall_before = float(status.get("wall_s") or 0.0)
    pipe.update_status(state="running", started_at=status.get("started_at") or now(), error=None, ended_at=None)
    try:
        # step / total_steps count stages, so a listing shows a pipeline's progress like a run's.
        done = sum(stages.get(name, {}).get("state") == "completed" for name, _ in plan)
        pipe.update_status(step=done, total_steps=len(plan))
        for name, steps in plan:
            if stages.get(name, {}).get("state") == "completed":
                continue
            if pipe.stop_requested():
                return _stopped(pipe, name, wall_before + time.time() - t0)
            stages[name] = {**stages.get(name, {}), "state": "running", "started_at": now()}
            # phase names what an evaluation stage is doing; a new stage starts without the last one's
            pipe.update_status(stage=name, stages=stages, phase=None)
            pipe.log(f"stage {name}: started")
            result = steps(pipe, pcfg, configs, stages)
            if result == "stopped":
                stages[name]["state"] = "stopped"
                return _stopped(pipe, name, wall_before + time.time() - t0, stages)
            stages[name].update(state="completed", ended_at=now(), **(result or {}))
            done += 1
            pipe.update_status(stages=stages, step=done, wall_s=round(wall_before + time.time() - t0, 1))
            reached = f" (accuracy {stages[name]['accuracy']:.4f})" if stages[name].get("accuracy") is not None else ""
            pipe.log(f"stage {name}: completed{reached}")
        return pipe.update_status(state="completed", stage=None, ended_at=now(),
                                  **finish(wall_before + time.time() - t0))
    except Exception as exc:
        current = pipe.status().get("stage")
        if current and current in stages:
            stages[current]["state"] = "failed"
        pipe.update_status(state="failed", error=f"stage {current}: {error_line(exc)}", stages=stages, ended_at=now(),
                           wall_s=round(wall_before + time.time() - t0, 1))
        raise


def _stopped(pipe: RunDir, stage: str, wall: float, stages: dict | None = None) -> dict[str, Any]:
    pipe.stop_flag.unlink(missing_ok=True)
    extra = {"stages": stages} if stages is not None else {}
    return pipe.update_status(state="stopped", stage=stage, ended_at=now(), wall_s=round(wall, 1), **extra)


# -- stages ------------------------------------------------------------------------------
def train_stage(key: str):
    def step(pipe: RunDir, pcfg: PipelineConfig, configs: dict[str, RunConfig], stages: dict) -> Any:
        run = pipe.stage(key)
        stages[key]["run_id"] = run.run_id
        previous = run.status().get("state")
        resume = previous in ("stopped", "interrupted", "failed", "running", "stopping")
        if not run.config_path.exists():
            run.write_config("train", configs[key].to_dict(), parent=pipe.run_id, stage=key)
        # A stop request on the pipeline reaches the stage's training loop through the stage's own flag.
        if pipe.stop_requested():
            run.request_stop()
        status = train_run(configs[key], run, resume=resume)
        if status.get("state") == "stopped":
            return "stopped"
        return {"run_id": run.run_id, "accuracy": (status.get("metrics") or {}).get("test_accuracy")}
    return step


def eval_stage(model_stage: str, data_cfg: str, key: str):
    def step(pipe: RunDir, pcfg: PipelineConfig, configs: dict[str, RunConfig], stages: dict) -> Any:
        cfg = pcfg.source if data_cfg == "source" else pcfg.target
        run = pipe.stage(model_stage)
        test = load_test_split(cfg)
        if test is None:
            raise ConfigError("dataset", f"{cfg.dataset} has no {cfg.eval_split!r} split to evaluate on")
        # The same tokenization as the dataset's own rows elsewhere in the table, so rows compare.
        predictor = Predictor.from_run(run.run_id, reading=cfg.reading, batch_size=cfg.eval_batch_size,
                                       precision=cfg.precision)
        pipe.update_status(phase=f"evaluating {run.run_id} on {test.source}")
        m = evaluate(predictor, test, run, name=key)
        write_card(run)  # its card now has this row too
        pipe.log(f"{key}: accuracy {m['accuracy']:.4f} f1 {m['f1']:.4f} n={m['n']} ({m['seconds']:.0f}s)")
        if test.skipped_note():
            pipe.log(test.skipped_note())
        if note := one_answer_note(m):
            pipe.log(f"note: {key}: {note}")
        return {"run_id": run.run_id, "accuracy": m["accuracy"]}
    return step


def _plan(pcfg: PipelineConfig):
    plan = [("source", train_stage("source")),
            ("target_zero_shot", eval_stage("source", "target", "target_zero_shot")),
            ("target", train_stage("target")),
            ("source_after_target", eval_stage("target", "source", "source_after_target"))]
    if pcfg.baseline:
        plan.append(("baseline", train_stage("baseline")))
    return plan


# -- results -----------------------------------------------------------------------------
def _test_eval(run: RunDir) -> dict[str, Any] | None:
    """The metrics a training run wrote for its own test split at the end of training."""
    for name, m in run.evals().items():
        if name not in ROW_NAMES and m.get("dataset"):
            return m
    return None


def write_results(pipe: RunDir, pcfg: PipelineConfig | None = None, wall_s: float | None = None) -> dict[str, Any]:
    """results.json / results.md from the stage folders: the comparison table of the transfer. The worker's
    (and `pipeline`'s) to write; readers use `read_results`."""
    results = _gather(pipe, wall_s)
    write_json_atomic(pipe.path / "results.json", results)
    (pipe.path / "results.md").write_text(results_markdown(results), encoding="utf-8")
    return results


def read_results(pipe: RunDir) -> dict[str, Any]:
    """A pipeline's table as it stands, without writing anything: results.json once it has completed, else the
    rows its finished stages have so far (a running or stopped pipeline). The one reader of its results."""
    if pipe.status().get("state") == "completed":
        saved = read_json(pipe.path / "results.json")
        if isinstance(saved, dict):
            return saved
    return _gather(pipe)


def _gather(pipe: RunDir, wall_s: float | None = None) -> dict[str, Any]:
    """The comparison table, read from the stage folders."""
    rid = pipe.run_id
    src, tgt, base = (pipe.stage(name) for name in STAGES)
    sources = {
        "source": (src, _test_eval(src)),
        "target_zero_shot": (src, src.evals().get("target_zero_shot")),
        "target_finetuned": (tgt, _test_eval(tgt)),
        "source_after_target": (tgt, tgt.evals().get("source_after_target")),
        "target_only_baseline": (base, _test_eval(base)),
    }
    rows = []
    for name in ROW_NAMES:
        run, m = sources[name]
        if not m:
            continue
        dataset, _, split = str(m.get("dataset", "")).partition(":")
        rows.append({"name": name, "run_id": run.run_id, "dataset": dataset, "split": split,
                     "accuracy": round(m["accuracy"], 4), "f1": round(m["f1"], 4), "n": m["n"],
                     "scored_as": scored_as(m), "confusion": m.get("confusion"), "predictions": m.get("predictions"),
                     "group_field": m.get("group_field"), "by_group": m.get("by_group"),
                     "ece": m.get("ece"), "ece_uncalibrated": m.get("ece_uncalibrated", m.get("ece")),
                     "brier": m.get("brier"), "temperature": m.get("temperature"),
                     "reliability": m.get("reliability"), "reliability_uncalibrated": m.get("reliability_uncalibrated")})
    status = pipe.status()
    wall = round(wall_s if wall_s is not None else float(status.get("wall_s") or 0.0), 1)
    return {"pipeline_id": rid, "rows": rows, "wall_s": wall, "created_at": now()}


def scored_as(metrics: dict[str, Any]) -> str:
    """How an evaluation read each review (empty for metrics written before it was recorded)."""
    if not metrics.get("max_length"):
        return ""
    confidence = metrics.get("confidence") or 1.0
    label = Reading(max_length=metrics["max_length"], truncation=metrics.get("truncation") or "head_tail",
                    windows=metrics.get("windows") or 1, confidence=confidence).label()
    if confidence < 1.0 and metrics.get("windows_read"):  # how much of the reading the threshold saved
        label += f" ({metrics['windows_read']:.2f} read per review)"
    return label


def points(delta: float) -> str:
    """An accuracy difference in percentage points: 0.046 -> '+4.60' (not a relative change)."""
    return f"{delta * 100:+.2f}"


def row_gaps(row: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[str, str]:
    """A target row against zero-shot and (the fine-tuned row) against the baseline, in accuracy points;
    blank where the comparison does not apply."""
    by = {r["name"]: r for r in rows}
    zs, bl = by.get("target_zero_shot"), by.get("target_only_baseline")

    def gap(other: dict[str, Any] | None, names: tuple[str, ...]) -> str:
        return points(row["accuracy"] - other["accuracy"]) if other and row["name"] in names else ""

    return gap(zs, ("target_finetuned", "target_only_baseline")), gap(bl, ("target_finetuned",))


def row_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """What a reader of the table must know before comparing its figures, one warning per kind, each naming its
    rows: rows scored on reviews of one label only (the first rows of a split sorted by label), and rows whose model
    gave every review the same label (a stage that learnt nothing). None: []."""
    scored_on_one = [f"{ROW_TITLES[r['name']]} ({r['dataset']}:{r['split']}: all {r['n']} {label})"
                     for r in rows if (label := single_label(r.get("confusion")))]
    answering_one = [f"{ROW_TITLES[r['name']]} (all {r['n']} {label})"
                     for r in rows if (label := single_prediction(r.get("confusion")))]
    return [f"{why}: {'; '.join(named)}." for why, named in (
        ("Scored on reviews of one label only, so the accuracy there says how often the model gives that label (the "
         "first rows of a split sorted by label, such as the Hub's imdb, cut by max_eval_samples?)", scored_on_one),
        ("A model that gives every review the same label has not learnt to tell them apart; its accuracy is only the "
         "share of that label (more training reviews or steps, or another learning rate, for that stage)", answering_one),
    ) if named]


def results_markdown(results: dict[str, Any]) -> str:
    lines = [f"# Transfer results: {results['pipeline_id']}", "",
             "| row | data | scored as | accuracy | F1 | n | vs zero-shot (points) | vs baseline (points) "
             "| ECE (raw → calibrated) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        d_zs, d_bl = row_gaps(r, results["rows"])
        ece = f"{r['ece_uncalibrated']:.4f} → {r['ece']:.4f}" if r.get("ece") is not None else ""
        lines.append(f"| {ROW_TITLES[r['name']]} | {r['dataset']}:{r['split']} | {r.get('scored_as', '')} "
                     f"| {r['accuracy']:.4f} | {r['f1']:.4f} "
                     f"| {r['n']} | {d_zs} | {d_bl} | {ece} |")
    for warning in row_warnings(results["rows"]):
        lines += ["", f"**Note**: {warning}"]
    by_group = forgetting_by_group(results["rows"])
    if by_group:
        field = by_group[0]["field"]
        lines += ["", f"Source accuracy by {field}, before and after target training:", "",
                  f"| {field} | n | before | after | change (points) |", "|---|---|---|---|---|"]
        lines += [f"| {g['group']} | {g['n']} | {g['before']:.4f} | {g['after']:.4f} | {g['change']} |" for g in by_group]
    lines += ["", f"Wall time: {results['wall_s']:.0f} s"]
    return "\n".join(lines) + "\n"


def forgetting_by_group(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where the source data has groups (Amazon's product domains): each group's source accuracy before and
    after target training, so forgetting (or gain) shows where it happens. Empty where there are none."""
    by = {r["name"]: r for r in rows}
    before, after = by.get("source") or {}, by.get("source_after_target") or {}
    if not (before.get("by_group") and after.get("by_group")) or before.get("group_field") != after.get("group_field"):
        return []
    return [{"field": before["group_field"], "group": g, "n": b["n"], "before": b["accuracy"],
             "after": after["by_group"][g]["accuracy"], "change": points(after["by_group"][g]["accuracy"] - b["accuracy"])}
            for g, b in before["by_group"].items() if g in after["by_group"]]


def flipped_predictions(pipe: RunDir):
    """Target reviews whose label changed between zero-shot and fine-tuned, with both probabilities."""
    import pandas as pd

    zs = pipe.stage("source").evals_dir / "target_zero_shot" / "predictions.csv"
    tgt = _test_eval(pipe.stage("target"))
    if not zs.exists() or not tgt or not Path(tgt.get("predictions", "")).exists():
        return pd.DataFrame()
    a = pd.read_csv(zs)
    b = pd.read_csv(tgt["predictions"])[["row", "predicted", "p_positive"]]
    merged = a.merge(b, on="row", suffixes=("_zero_shot", "_finetuned"))
    flipped = merged[merged["predicted_zero_shot"] != merged["predicted_finetuned"]].copy()
    flipped["fixed"] = flipped["predicted_finetuned"] == flipped["label"]
    return flipped[["row", "label", "predicted_zero_shot", "p_positive_zero_shot", "predicted_finetuned",
                    "p_positive_finetuned", "fixed", "text"]].reset_index(drop=True)


def other_sources_scores(pipe: RunDir, predictor_for=Predictor.from_run, path: str | Path = OTHER_SOURCES) -> list[dict[str, Any]]:
    """Each trained model of a pipeline on reviews from sources neither stage saw (OTHER_SOURCES):
    accuracy overall and per source, and the reviews it got wrong. `predictor_for(run_id)` loads a
    model (the app passes its cached loader)."""
    import numpy as np

    from .data import LABEL_NAMES, load_eval_examples
    from .metrics import accuracy_by_group

    examples = load_eval_examples(str(path), text_fields=["text"], label_field="label")
    sources = examples.groups  # its `source` column
    out = []
    for stage, role in STAGE_ROLES.items():
        run = pipe.stage(stage)
        if not run.has_model():
            continue
        probs = predictor_for(run.run_id).predict_proba(examples.texts)
        right = probs.argmax(axis=1) == examples.labels
        out.append({"stage": stage, "role": role, "run_id": run.run_id, "n": len(examples),
                    "accuracy": round(float(right.mean()), 4),
                    "by_source": {s: g["accuracy"] for s, g in accuracy_by_group(right, sources).items()},
                    "wrong": [{"source": sources[i], "label": LABEL_NAMES[int(examples.labels[i])],
                               "p_positive": round(float(probs[i, 1]), 3), "text": examples.texts[i]}
                              for i in np.flatnonzero(~right)]})
    return out


# ---------------------------------------------------------------------------------------
# The pipeline kind's check and results (core/kinds.py)
def check_pipeline(pcfg: PipelineConfig) -> PipelineConfig:
    from .training import preflight

    for cfg in (pcfg.source, pcfg.target):
        preflight(cfg)
    return pcfg


def results_json(results: dict[str, Any], state: str | None) -> dict[str, Any]:
    """`pipeline --json` and `results --json`: the table's rows, without the per-review and chart data."""
    heavy = ("predictions", "reliability", "reliability_uncalibrated", "confusion", "by_group")
    return {"pipeline_id": results["pipeline_id"], "state": state,
            "rows": [{k: v for k, v in r.items() if k not in heavy} for r in results["rows"]],
            "wall_s": results["wall_s"]}


def report(pipe: RunDir, flipped: int = 0, **_: Any):
    """`results PIPELINE`: the comparison table, finished or so far, and the target reviews whose label flipped
    between zero-shot and fine-tuned."""
    from .kinds import Report

    state = pipe.status().get("state")
    results = read_results(pipe)
    data = results_json(results, state)
    text = results_markdown(results).rstrip() if results["rows"] else f"No rows yet: the pipeline is {state}."
    flips = flipped_predictions(pipe) if flipped else None
    if flips is not None:
        import json

        data["flipped"] = json.loads(flips.head(flipped).to_json(orient="records"))
        data["flipped_total"] = len(flips)
        if not flips.empty:
            text += (f"\n\n{len(flips)} target reviews flipped between zero-shot and fine-tuned: "
                     f"{int(flips['fixed'].sum())} now right, {int((~flips['fixed']).sum())} now wrong. "
                     f"The first {min(flipped, len(flips))}:")
            for f in flips.head(flipped).itertuples():
                text += (f"\n  row {f.row:>6}  {f.label:8}  {f.predicted_zero_shot} {f.p_positive_zero_shot:.3f} -> "
                         f"{f.predicted_finetuned} {f.p_positive_finetuned:.3f}  {'fixed' if f.fixed else 'broken'}  "
                         f"{str(f.text)[:80]!r}")
    return Report(data, text, row_warnings(results["rows"]))
