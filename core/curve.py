"""The data-efficiency curve: what the transfer buys at each budget of target labels.

    python -m core curve --preset offline-quick --labels 100,400,1600 --seeds 2

One job, run like a pipeline (`pipeline.run_plan`): the source stage once (`<id>.source`), its zero-shot score on the
target's test rows, then for each budget and seed a target stage from the source model (`<id>.n400-s1-transfer`) and
a baseline from the pretrained model (`<id>.n400-s1-baseline`), trained on the same balanced, seeded sample of the
target's training split and scored on the same target test rows. Stages already completed are never trained again:
a stopped or killed curve resumes at the point where it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import PipelineConfig, RunConfig, Settings, setting
from .errors import ConfigError
from .pipeline import eval_stage, train_stage, run_plan
from .runs import RunDir, now, write_json_atomic

STARTS = {"transfer": "from the source model", "baseline": "from the pretrained model"}


@dataclass
class CurveConfig(Settings):
    """A pipeline's settings, and the label budgets and seeds the target stage and its baseline are trained at."""

    base: dict = setting(factory=dict, group="custom", help="The pipeline's settings ({\"source\": ..., \"target\": ...}).")
    labels: list[str] = setting(factory=lambda: ["100", "400", "1600"],
                                help="Target training reviews per point, balanced (half per label), or `all`.")
    seeds: int = setting(2, between=(1, 10), help="Samples (and seeds) per budget: the spread of each point.")
    min_steps: int = setting(50, min=1, help="Optimizer steps a point trains for at least (more epochs over a small "
                                             "budget): a budget of 100 is otherwise 7 steps.")
    name: str = setting("", help="A label shown beside the curve's id.")

    def validate(self) -> None:
        if "source" not in self.base:
            raise ConfigError("base", "a curve needs a pipeline's settings (a preset, or a pipeline config)")
        budgets = []
        for label in self.labels:
            text = str(label).strip().lower()
            if text != "all" and not (text.isdigit() and int(text) >= 2):
                raise ConfigError("labels", f"{label!r} is not a number of reviews (2 or more) or `all`")
            budgets.append(text)
        if not budgets:
            raise ConfigError("labels", "give at least one budget (100,400,1600)")
        self.labels = sorted(set(budgets), key=lambda b: math.inf if b == "all" else int(b))

    @property
    def pipeline(self) -> PipelineConfig:
        return PipelineConfig.from_dict(self.base)

    def points(self) -> list[tuple[str, int, str]]:
        """(budget, seed, start) for every point, the smallest budgets first."""
        return [(b, s, start) for b in self.labels for s in range(self.seeds) for start in STARTS]


def point_name(budget: str, seed: int, start: str) -> str:
    return f"n{budget}-s{seed}-{start}"


def point_config(cfg: CurveConfig, budget: str, seed: int, start: str, source_id: str) -> RunConfig:
    """The pipeline's target stage with this budget (half per label, drawn with this seed), from the source model
    or the pretrained one, trained for at least `min_steps` steps."""
    pcfg = cfg.pipeline
    tgt = pcfg.target
    per_step = tgt.batch_size * tgt.gradient_accumulation_steps
    epochs = tgt.epochs if budget == "all" else max(tgt.epochs, math.ceil(cfg.min_steps * per_step / int(budget)))
    return tgt.replace(model=pcfg.source.model, init_from=source_id if start == "transfer" else None, seed=seed,
                       samples_per_class=None if budget == "all" else int(budget) // 2, max_train_samples=None,
                       epochs=float(epochs), name=f"{cfg.name or 'curve'}: {budget} labels, seed {seed}, {start}")


def check_budgets(cfg: CurveConfig) -> dict[str, int]:
    """Each label's count in the target's training split; a budget it cannot fill is refused with its size."""
    from .data import load_table, map_labels

    tgt = cfg.pipeline.target
    table = load_table(tgt.dataset, tgt.train_split, tgt.dataset_config)
    if tgt.label_field not in table.column_names:
        raise ConfigError("target.label_field", f"column {tgt.label_field!r} is not in {tgt.dataset}")
    labels = map_labels(table[tgt.label_field])
    counts = {"negative": int((labels == 0).sum()), "positive": int((labels == 1).sum())}
    val = int(tgt.validation_size) if tgt.validation_size >= 1 else round(tgt.validation_size * len(labels))
    for budget in cfg.labels:
        if budget != "all" and (int(budget) // 2 > min(counts.values()) or int(budget) + val > len(labels)):
            raise ConfigError("labels", f"{budget} is more than the target's training split holds ({len(labels):,} "
                                        f"reviews: {counts['negative']:,} negative, {counts['positive']:,} positive, "
                                        f"{val} of them for validation)")
    return {**counts, "total": len(labels), "validation": val}


def run_curve(cfg: CurveConfig, job: RunDir, resume: bool = False) -> dict[str, Any]:
    pcfg = cfg.pipeline
    source_id = job.stage("source").run_id
    configs = {"source": pcfg.source.replace(name=f"{cfg.name or 'curve'}: source", init_from=None)}
    plan = [("source", train_stage("source")),
            ("target_zero_shot", eval_stage("source", "target", "target_zero_shot"))]
    for budget, seed, start in cfg.points():
        name = point_name(budget, seed, start)
        configs[name] = point_config(cfg, budget, seed, start, source_id)
        plan.append((name, _with_results(train_stage(name), cfg)))

    def finish(wall: float) -> dict[str, Any]:
        results = write_results(job, cfg, wall)
        return {"wall_s": results["wall_s"], "metrics": {"crossover": results["crossover"]["labels"]}}

    return run_plan(job, pcfg, configs, plan, finish)


def _with_results(step, cfg: CurveConfig):
    """A point's stage, then results.json rewritten: every point so far, for the Transfer page while it runs."""
    def run(job: RunDir, *args: Any) -> Any:
        out = step(job, *args)
        if out != "stopped":
            write_results(job, cfg)
        return out
    return run


# ---------------------------------------------------------------------------------------
def read_results(job: RunDir, cfg: CurveConfig | None = None) -> dict[str, Any]:
    """Every point that has its test figure, the zero-shot row, the mean and spread per budget and start, and the
    crossover, read from the stage folders (nothing written)."""
    cfg = cfg or CurveConfig.from_dict(job.config())
    points = []
    for budget, seed, start in cfg.points():
        run = job.stage(point_name(budget, seed, start))
        m = (run.status().get("metrics") or {}) if run.status().get("state") == "completed" else {}
        if m.get("test_accuracy") is None:
            continue
        points.append({"budget": budget, "labels": _labels_used(run, budget), "seed": seed, "start": start,
                       "accuracy": round(m["test_accuracy"], 4), "f1": round(m.get("test_f1") or 0.0, 4),
                       "n": m.get("test_n"), "ece": m.get("test_ece"), "run_id": run.run_id})
    zs = job.stage("source").evals().get("target_zero_shot")
    summary = []
    for budget in cfg.labels:
        for start in STARTS:
            acc = [p["accuracy"] for p in points if p["budget"] == budget and p["start"] == start]
            if acc:
                labels = next(p["labels"] for p in points if p["budget"] == budget)
                summary.append({"budget": budget, "labels": labels, "start": start, "mean": round(float(np.mean(acc)), 4),
                                "min": min(acc), "max": max(acc), "seeds": len(acc)})
    return {"curve_id": job.run_id, "points": points, "summary": summary,
            "zero_shot": round(zs["accuracy"], 4) if zs else None, "test": zs["dataset"] if zs else None,
            "crossover": crossover(summary), "wall_s": job.status().get("wall_s"), "created_at": now()}


def write_results(job: RunDir, cfg: CurveConfig, wall_s: float | None = None) -> dict[str, Any]:
    results = read_results(job, cfg)
    if wall_s is not None:
        results["wall_s"] = round(wall_s, 1)
    write_json_atomic(job.path / "results.json", results)
    return results


def _labels_used(run: RunDir, budget: str) -> int:
    """The training reviews a point used: its budget (even), or for `all` what its log says it trained on."""
    if budget != "all":
        return int(budget) // 2 * 2
    for line in run.log_path.read_text(encoding="utf-8", errors="replace").splitlines() if run.log_path.exists() else []:
        if "] data: train " in line:
            return int(line.split("] data: train ")[1].split()[0])
    return 0


def crossover(summary: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the transfer stops helping: the first budget from which the source model's mean accuracy is no longer
    above the pretrained model's at any larger budget, interpolated on the log scale between it and the budget
    before. `labels` None: it helps at every budget measured (or at none: `helps` says which)."""
    by = {}
    for row in summary:
        by.setdefault(row["labels"], {})[row["start"]] = row["mean"]
    pairs = sorted((n, v["transfer"] - v["baseline"]) for n, v in by.items() if {"transfer", "baseline"} <= set(v))
    if not pairs:
        return {"labels": None, "helps": None, "text": "no budget has both lines yet"}
    gaps = [g for _, g in pairs]
    if all(g > 0 for g in gaps):
        top = pairs[-1][0]
        spread = max((r["max"] - r["min"] for r in summary if r["labels"] == top and "max" in r), default=0.0)
        note = (f" (at {top:,} labels by {gaps[-1] * 100:+.2f} points, within the seeds' spread of "
                f"{spread * 100:.2f})" if gaps[-1] <= spread else "")
        return {"labels": None, "helps": "all", "text": f"the transfer helps at every budget measured{note}"}
    if all(g <= 0 for g in gaps):
        return {"labels": None, "helps": "none", "text": "the transfer helps at no budget measured"}
    if gaps[-1] > 0:  # not at some budget, but again at the largest: no point past which it stops
        return {"labels": None, "helps": "largest",
                "text": f"the transfer still helps at the largest budget measured ({pairs[-1][0]:,} labels)"}
    k = next(i for i in range(len(pairs)) if all(g <= 0 for g in gaps[i:]))
    if k == 0:
        return {"labels": None, "helps": "none", "text": "the transfer helps at no budget measured"}
    (n0, g0), (n1, g1) = pairs[k - 1], pairs[k]
    at = math.exp(math.log(n0) + (math.log(n1) - math.log(n0)) * g0 / (g0 - g1))
    rounded = int(float(f"{at:.2g}"))
    return {"labels": rounded, "helps": "below",
            "text": f"past about {rounded:,} labels the transfer no longer helps"}


def curve_csv(results: dict[str, Any]) -> str:
    """Every point as CSV (the Transfer page's download)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, ["budget", "labels", "seed", "start", "accuracy", "f1", "n", "ece", "run_id"])
    writer.writeheader()
    writer.writerows(results["points"])
    return out.getvalue()


# ---------------------------------------------------------------------------------------
# The curve kind's check, preset and results (core/kinds.py)
def check_curve(cfg: CurveConfig) -> CurveConfig:
    from .training import preflight

    for stage in (cfg.pipeline.source, cfg.pipeline.target):
        preflight(stage)
    check_budgets(cfg)
    return cfg


def preset_curve(name: str) -> CurveConfig:
    """A preset's pipeline, with the budgets and seeds sized for its machine where it has them."""
    from .config import PRESETS, load_preset

    sized = PRESETS.get(name, {}).get("curve", {})
    return CurveConfig(base=load_preset(name).to_dict(), **{k: v for k, v in sized.items() if k in ("labels", "seeds")})


def report(job: RunDir, **_: Any):
    """`results CURVE`: every point so far, the mean and spread per budget, and the crossover."""
    from .kinds import Report

    out = read_results(job)
    out["state"] = job.status().get("state")
    zs = f", zero-shot {out['zero_shot']:.4f}" if out["zero_shot"] is not None else ""
    lines = [f"curve {job.run_id}: {out['state']}{zs} on {out['test'] or 'the target test rows'}",
             f"  {'labels':>8}  {'from the source model':>24}  {'from the pretrained model':>26}"]
    rows: dict[int, dict[str, str]] = {}
    for r in out["summary"]:
        rows.setdefault(r["labels"], {})[r["start"]] = f"{r['mean']:.4f} ({r['min']:.3f}-{r['max']:.3f}, {r['seeds']})"
    for labels, v in sorted(rows.items()):
        lines.append(f"  {labels:>8,}  {v.get('transfer', ''):>24}  {v.get('baseline', ''):>26}")
    lines.append(out["crossover"]["text"])
    return Report(out, "\n".join(lines))
