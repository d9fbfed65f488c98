"""Hyperparameter search: one Optuna study per search, each trial an ordinary run in the queue.

    python -m core search --preset offline-quick --param learning_rate=1e-5:3e-4:log --trials 8

    artifacts/runs/<search id>/       config.json (base settings, space, metric, ...), status.json, results.json
    artifacts/runs/<search id>.t01/   a trial: a train run (run.json: parent = the search, trial = its number)
    artifacts/runs/<search id>.source the source model every trial starts from (a search of a pipeline's target)
    artifacts/optuna.db               the studies (SQLite), one per search, named by the search's id

The search's worker asks the study for a trial, queues it as a run, and tells the study how it ended; the trial's
own worker reports the metric at every evaluation and stops where the pruner says. Ask/tell rather than
`Trainer.hyperparameter_search`: that runs every trial in one process, which then holds every trial's memory and
cannot stop or resume one trial.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

from .config import PipelineConfig, RunConfig, Settings, coerce, field_type, field_kind, setting
from .errors import ConfigError
from .paths import studies_url
from .runs import TERMINAL_STATES, RunDir, error_line, now, read_json, write_json_atomic

METRICS = {"eval_accuracy": "maximize", "eval_f1": "maximize", "eval_loss": "minimize", "transfer": "maximize"}
PRUNERS = ("median", "hyperband", "none")
# What a search without --param explores: the hyperparameters that matter most for fine-tuning.
DEFAULT_SPACE = {"learning_rate": "1e-5:3e-4:log", "batch_size": "8,16,32", "epochs": "int:1:3",
                 "warmup_ratio": "0.0:0.2", "weight_decay": "0.0:0.1"}
# Searching these would change what is compared, not how well it is trained.
NOT_SEARCHABLE = {"model", "init_from", "dataset", "dataset_config", "text_fields", "label_field", "name",
                  "train_split", "eval_split", "max_eval_samples", "validation_size"}


# ---------------------------------------------------------------------------------------
# The search space: one SPEC per field
@dataclass(frozen=True)
class Dimension:
    """One field's range: a float range (log scale or not), an integer range, or a list of choices."""

    name: str
    scale: str  # float, int, choice
    low: Any = None
    high: Any = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.scale == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.scale == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def holds(self, value: Any) -> bool:
        if self.scale == "choice":
            return value in self.choices
        return isinstance(value, (int, float)) and self.low <= value <= self.high


def parse_spec(name: str, spec: str) -> Dimension:
    """`1e-5:3e-4:log`, `0.0:0.2`, `int:1:4` (`int:1:64:log`) or `8,16,32`, checked against the field's rules."""
    where = f"--param {name}"
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    if name not in fields:
        raise ConfigError(where, "not a setting (python -m core train --help lists them)")
    if name in NOT_SEARCHABLE:
        raise ConfigError(where, "says what is trained or scored, not how: set it with --set")
    f = fields[name]
    tp, _ = field_kind(RunConfig, f)
    spec = str(spec).strip()
    if not spec:
        raise ConfigError(where, "empty range (LOW:HIGH[:log], int:LOW:HIGH or A,B,C)")
    if "," in spec or ":" not in spec:
        try:
            values = tuple(coerce(name, v.strip(), field_type(f, RunConfig)) for v in spec.split(",") if v.strip())
        except ConfigError:
            raise ConfigError(where, f"{spec!r} does not parse (LOW:HIGH[:log], int:LOW:HIGH[:log] or A,B,C of "
                                     f"{tp.__name__} values)") from None
        if len(values) < 2:
            raise ConfigError(where, f"{spec!r}: give at least two choices (A,B) or a range (LOW:HIGH)")
        dim = Dimension(name, "choice", choices=tuple(dict.fromkeys(values)))
        checked = dim.choices
    else:
        parts = spec.split(":")
        integer = parts[0] == "int"
        parts = parts[1:] if integer else parts
        log = len(parts) == 3 and parts[2] == "log"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise ConfigError(where, f"{spec!r} does not parse (LOW:HIGH[:log], int:LOW:HIGH[:log] or A,B,C)")
        if tp is bool or tp is str or tp is list:
            raise ConfigError(where, f"a {tp.__name__} setting takes choices (A,B), not a range")
        if tp is int and not integer:
            raise ConfigError(where, f"an integer setting takes int:LOW:HIGH, got {spec!r}")
        try:
            low, high = (int(p) if integer else float(p) for p in parts[:2])
        except ValueError:
            raise ConfigError(where, f"{spec!r}: LOW and HIGH must be {'integers' if integer else 'numbers'}") from None
        if low > high:
            raise ConfigError(where, f"{spec!r}: LOW is above HIGH")
        if log and low <= 0:
            raise ConfigError(where, f"{spec!r}: a log range must stay above 0")
        dim = Dimension(name, "int" if integer else "float", low, high, log)
        checked = (low, high)
    from .config import check

    for value in checked:  # the field's own rules: a range may not leave what a run accepts
        try:
            check(name, value, f.metadata)
        except ConfigError as exc:
            raise ConfigError(where, exc.message) from None
    return dim


def parse_space(space: dict[str, str]) -> list[Dimension]:
    return [parse_spec(name, spec) for name, spec in space.items()]


# ---------------------------------------------------------------------------------------
@dataclass
class SearchConfig(Settings):
    """A search: the settings every trial starts from, the fields it varies and how it scores a trial."""

    base: dict = setting(factory=dict, group="custom", help="The settings every trial starts from: a run's config, or a pipeline's "
                                            "({\"source\": ..., \"target\": ...}).")
    space: dict = setting(factory=dict, group="custom", help="FIELD: SPEC for each field varied (empty: learning rate, batch size, "
                                             "epochs, warmup and weight decay).")
    trials: int = setting(8, min=1, help="Finished trials (completed or pruned) the search runs to.")
    metric: str = setting("eval_accuracy", choices=tuple(METRICS),
                          help="What a trial is scored by: the best validation accuracy, F1 or loss of its "
                               "evaluations, or `transfer`: the source model's zero-shot accuracy on held-out rows "
                               "of the target's training split (a pipeline's source stage).")
    direction: str | None = setting(None, choices=("maximize", "minimize"),
                                    help="maximize or minimize (default: what the metric wants).")
    pruner: str = setting("median", choices=PRUNERS,
                          help="Stop trials early whose validation figures trail: median (below the median of "
                               "earlier trials at the same step), hyperband, or none.")
    stage: str = setting("source", choices=("source", "target"), group="custom",
                         help="A pipeline's stage searched; target: the source model is trained once and every "
                              "trial starts from it.")
    transfer_rows: int = setting(1000, min=2, help="With metric=transfer: the target training reviews scored "
                                                   "(a seeded balanced sample; never the test split).")
    seed: int = setting(0, help="Seeds the sampler: the same seed asks the same first trials.")
    name: str = setting("", help="A label shown beside the search's id.")

    def validate(self) -> None:
        if not self.base:
            raise ConfigError("base", "the settings every trial starts from are missing")
        self.space = dict(self.space or DEFAULT_SPACE)
        parse_space(self.space)
        pipeline = "source" in self.base
        if self.metric == "transfer" and not (pipeline and self.stage == "source"):
            raise ConfigError("metric", "transfer scores a pipeline's source stage on its target: give a pipeline "
                                        "preset or config (and the source stage)")
        if self.stage == "target" and not pipeline:
            raise ConfigError("stage", "target needs a pipeline preset or config (a source to start from)")
        self.direction = self.direction or METRICS[self.metric]
        self.trial_config({})  # the base settings must make a run

    @property
    def pipeline(self) -> PipelineConfig | None:
        return PipelineConfig.from_dict(self.base) if "source" in self.base else None

    def stage_config(self) -> RunConfig:
        """The settings a trial starts from: the run's, or the pipeline stage's."""
        pcfg = self.pipeline
        if pcfg is None:
            return RunConfig.from_dict(self.base)
        if self.stage == "source":
            return pcfg.source.replace(init_from=None)
        return pcfg.target.replace(model=pcfg.source.model)

    def trial_config(self, params: dict[str, Any], init_from: str | None = None) -> RunConfig:
        cfg = self.stage_config().replace(**params)
        return cfg.replace(init_from=init_from) if init_from else cfg

    @property
    def intermediate(self) -> str:
        """What a trial reports at each evaluation for the pruner (transfer: its validation accuracy)."""
        return "eval_accuracy" if self.metric == "transfer" else self.metric


# ---------------------------------------------------------------------------------------
# The study
def make_pruner(name: str):
    import optuna

    if name == "median":
        # One finished trial to compare against: searches here are a handful of trials, not hundreds (a trial is
        # never judged on its first evaluation, below).
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(search_id: str, cfg: SearchConfig):
    """The search's study, created on first use; a restart (resume) finds it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(studies_url(), engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.create_study(study_name=search_id, storage=storage, load_if_exists=True, direction=cfg.direction,
                               pruner=make_pruner(cfg.pruner), sampler=optuna.samplers.TPESampler(seed=cfg.seed))


def search_config(run: RunDir) -> SearchConfig:
    return SearchConfig.from_dict(run.config())


def trial_runs(search: RunDir) -> list[RunDir]:
    """The search's trial folders, by trial number."""
    found = [RunDir(p) for p in search.path.parent.glob(f"{search.run_id}.t*") if p.is_dir()]
    return sorted((r for r in found if r.job().get("trial") is not None), key=lambda r: r.job()["trial"])


def trial_value(run: RunDir, cfg: SearchConfig) -> float | None:
    """What a finished trial reached: the best of its evaluations' metric, or its transfer accuracy."""
    if cfg.metric == "transfer":
        return (run.status().get("metrics") or {}).get("transfer_accuracy")
    values = [m[cfg.metric] for m in run.metrics() if isinstance(m.get(cfg.metric), (int, float))]
    if not values:
        return None
    return max(values) if cfg.direction == "maximize" else min(values)


# ---------------------------------------------------------------------------------------
# The trial's side: report at every evaluation, stop where the pruner says
def trial_callback(run: RunDir):
    """A TrainerCallback that reports the search's metric to the study at every evaluation and ends the trial
    where the pruner prunes it (`.pruned` then says at which step and value)."""
    import optuna
    from transformers import TrainerCallback

    job = run.job()
    search = RunDir.for_id(job["parent"])
    cfg = search_config(search)
    study = open_study(search.run_id, cfg)
    trial = optuna.trial.Trial(study, job["trial_id"])
    key = cfg.intermediate

    class Report(TrainerCallback):
        pruned: str | None = None
        reports = 0
        every = 0  # a pruned search's trial without eval_steps: evaluate this often (steps), or 0

        def on_train_begin(self, args, state, control, **kwargs):
            # One evaluation an epoch gives the pruner nothing to compare until a trial is over: a trial that sets
            # no eval_steps is evaluated (and checkpointed, as eval_steps would) four times an epoch.
            if cfg.pruner != "none" and args.eval_strategy == "epoch" and state.max_steps >= 8:
                self.every = max(1, round(state.max_steps / max(args.num_train_epochs, 1) / 4))
                run.log(f"evaluating every {self.every} steps for the pruner (eval_steps is not set)")

        def on_step_end(self, args, state, control, **kwargs):
            # not at the last quarter of an epoch: the Trainer evaluates its end itself
            if (self.every and state.global_step % self.every == 0 and round((state.epoch or 0) * 4) % 4
                    and state.global_step < state.max_steps):
                control.should_evaluate = control.should_save = True

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = (metrics or {}).get(key)
            if value is None or not math.isfinite(value):
                return
            # The pruner compares trials at the same step: with evaluations four times an epoch, the quarter-epoch
            # they end, so that trials of other batch sizes and epochs line up; else the step itself.
            trial.report(float(value), round((state.epoch or 0) * 4) if self.every else state.global_step)
            self.reports += 1
            # Never on the first evaluation: early in the warmup every trial looks alike, and a slow starter with
            # a smaller learning rate would be cut before it shows what it does.
            if self.reports >= 2 and trial.should_prune():
                self.pruned = f"pruned at step {state.global_step}: {key} {value:.4f} trails the earlier trials"
                control.should_training_stop = True

    return Report()


def run_trial(cfg: RunConfig, run: RunDir, resume: bool = False) -> dict[str, Any]:
    """A trial's worker: train with the reporting callback, then (metric=transfer) score the target rows."""
    from .training import train_run

    status = train_run(cfg, run, resume=resume, callbacks=[trial_callback(run)])
    search_cfg = search_config(RunDir.for_id(run.job()["parent"]))
    if status.get("state") == "completed" and search_cfg.metric == "transfer":
        status = score_transfer(run, search_cfg)
    return status


def score_transfer(run: RunDir, cfg: SearchConfig) -> dict[str, Any]:
    """Zero-shot accuracy on a seeded, balanced sample of the target's *training* split, read as the target
    stage reads reviews: the figure a source stage is chosen by, with the test split left unread."""
    from .data import load_eval_examples
    from .evaluation import evaluate
    from .predictor import Predictor

    tgt = cfg.pipeline.target
    run.update_status(state="running", phase="scoring the target's held-out rows")
    rows = load_eval_examples(tgt.dataset, tgt.train_split, tgt.text_fields, tgt.label_field,
                              dataset_config=tgt.dataset_config, samples_per_class=max(1, cfg.transfer_rows // 2))
    predictor = Predictor.from_folder(run.model_dir, name=run.run_id, reading=tgt.reading,
                                      batch_size=tgt.eval_batch_size, precision=tgt.precision)
    m = evaluate(predictor, rows, run, name="transfer")
    run.log(f"transfer: {m['dataset']}: accuracy {m['accuracy']:.4f} n={m['n']}")
    metrics = {**(run.status().get("metrics") or {}), "transfer_accuracy": m["accuracy"]}
    return run.update_status(state="completed", phase=None, metrics=metrics)


# ---------------------------------------------------------------------------------------
# The search's side: ask, queue, watch, tell
def queue_trial(search: RunDir, study, cfg: SearchConfig, dims: list[Dimension], init_from: str | None) -> RunDir:
    trial = study.ask()
    params = {d.name: d.suggest(trial) for d in dims}
    run = RunDir(search.path.with_name(f"{search.run_id}.t{trial.number + 1:02d}"))
    trial.set_user_attr("run_id", run.run_id)
    tcfg = cfg.trial_config(params, init_from).replace(name=f"{cfg.name or 'search'}: trial {trial.number + 1}")
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config("trial", tcfg.to_dict(), parent=search.run_id, stage=f"t{trial.number + 1:02d}",
                     trial=trial.number, trial_id=trial._trial_id)
    write_json_atomic(run.status_path, {"state": "queued", "created_at": now(), "queued_at": now(),
                                        "updated_at": now(), "params": params})
    run.log(f"queued: trial {trial.number + 1} of search {search.run_id}: "
            + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()))
    return run


def _requeue(run: RunDir, resume: bool = True) -> None:
    run.stop_flag.unlink(missing_ok=True)
    run.update_status(state="queued", resume=resume, queued_at=now(), ended_at=None, error=None)
    run.log("queued again by its search")


def _tell(study, run: RunDir, cfg: SearchConfig, search: RunDir) -> str | None:
    """Tell the study how a trial ended, once; returns the study's state for it, or None while it goes on."""
    from optuna.trial import TrialState

    from .runs import worker_alive

    status = run.status()
    state = status.get("state")
    number = run.job()["trial"]
    if state == "completed":
        value = trial_value(run, cfg)
        if value is None and worker_alive(status):  # trained, and now scoring the target's rows (transfer)
            return None
        if value is None:
            study.tell(number, state=TrialState.FAIL)
            search.log(f"trial {number + 1} ({run.run_id}): completed without a {cfg.metric} figure: failed")
            return "FAIL"
        study.tell(number, value)
        search.log(f"trial {number + 1} ({run.run_id}): {cfg.metric} {value:.4f}")
        return "COMPLETE"
    if state == "pruned":
        study.tell(number, state=TrialState.PRUNED)
        search.log(f"trial {number + 1} ({run.run_id}): pruned")
        return "PRUNED"
    if state in ("failed", "interrupted", "cancelled", "stopped"):
        study.tell(number, state=TrialState.FAIL)
        why = status.get("error") or state
        search.log(f"trial {number + 1} ({run.run_id}): {state} ({why}): failed in the study; the search goes on")
        return "FAIL"
    return None


def run_search(cfg: SearchConfig, search: RunDir, resume: bool = False, poll: float = 1.0) -> dict[str, Any]:
    """The search's worker: keep up to SENTIMENT_LAB_MAX_CONCURRENT trials (on a Ray cluster, as many as it holds)
    queued or running until `trials` have finished (completed or pruned), telling the study each result. Never
    trains anything itself."""
    from .jobs import ensure_dispatcher

    search.stop_flag.unlink(missing_ok=True)
    search.mark_worker()
    search.update_status(state="running", phase="searching", started_at=search.status().get("started_at") or now(),
                         total_steps=cfg.trials, error=None, ended_at=None)
    study = open_study(search.run_id, cfg)
    dims = parse_space(cfg.space)
    at_once = _trials_at_once(search, cfg)
    if not study.trials:  # trial 1 is the base settings, where the space holds them: what the others must beat
        base = cfg.stage_config()
        start = {d.name: getattr(base, d.name) for d in dims if d.holds(getattr(base, d.name))}
        if start:
            study.enqueue_trial(start)
    try:
        init_from = None
        if cfg.stage == "target":
            init_from = _source_model(search, cfg, poll)
            if init_from is None:
                return _stopped(search, study, cfg)
        _pick_up(search, study, cfg)
        ensure_dispatcher()
        while True:
            if (ended := _round(search, study, cfg, dims, init_from, at_once)) is not None:
                return ended
            time.sleep(poll)
    except Exception as exc:
        search.fail(exc)
        raise


def _trials_at_once(search: RunDir, cfg: SearchConfig) -> int:
    """SENTIMENT_LAB_MAX_CONCURRENT, or on a Ray cluster as many as its nodes hold."""
    from .backends import concurrent_trials

    try:
        at_once = concurrent_trials(cfg.stage_config().num_processes)
    except ValueError as exc:
        at_once = 1
        search.log(f"one trial at a time: {exc}")
    search.log(f"trials at once: {at_once}")
    return at_once


def _pick_up(search: RunDir, study, cfg: SearchConfig) -> None:
    """A restart: trials left waiting (stopped with the search, or killed with it) continue from their checkpoints
    as the same trials of the study; trials that ended meanwhile are told."""
    from optuna.trial import TrialState

    from .jobs import reconcile

    mine = {r.job()["trial"]: r for r in trial_runs(search)}
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    for number in sorted(running):
        run = mine.get(number)
        if run is None:  # asked, but its folder never written (killed in between)
            study.tell(number, state=TrialState.FAIL)
            continue
        reconcile()
        if run.status().get("state") in ("stopped", "interrupted"):
            _requeue(run)
        elif run.status().get("state") in TERMINAL_STATES:
            _tell(study, run, cfg, search)


def _round(search: RunDir, study, cfg: SearchConfig, dims: list[Dimension], init_from: str | None,
           at_once: int) -> dict[str, Any] | None:
    """One look at the trials: tell the study those that ended, then end the search (stopped, finished, failing)
    or queue trials up to `at_once`. Returns the search's final status once it ends."""
    from optuna.trial import TrialState

    from .jobs import ensure_dispatcher, reconcile

    reconcile()
    stopping = search.stop_requested()
    mine = {r.job()["trial"]: r for r in trial_runs(search)}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING and t.number in mine and not (
                stopping and mine[t.number].status().get("state") == "stopped"):
            _tell(study, mine[t.number], cfg, search)
    trials = study.get_trials(deepcopy=False)
    # every trial not yet told: queued, training, or trained and still scoring (metric=transfer)
    active = [mine[t.number] for t in trials if t.state == TrialState.RUNNING and t.number in mine]
    counts = _counts(trials)
    _write_status(search, study, cfg, counts)
    if stopping:
        for run in active:
            if run.status().get("state") == "queued":  # never started: waits for the resume
                run.update_status(state="stopped", ended_at=now())
            else:
                run.request_stop()
        return _stopped(search, study, cfg) if all(r.status().get("state") in TERMINAL_STATES for r in active) else None
    if counts["finished"] >= cfg.trials and not active:
        return _finish(search, study, cfg)
    if counts["failed"] >= max(3, cfg.trials) and not counts["finished"] and not active:
        raise RuntimeError(f"{counts['failed']} trials failed and none finished (the last: {_last_error(search)})")
    queued = False
    while len(active) < at_once and counts["finished"] + len(active) < cfg.trials:
        active.append(queue_trial(search, study, cfg, dims, init_from))
        queued = True
    if queued:
        ensure_dispatcher()
    return None


def _source_model(search: RunDir, cfg: SearchConfig, poll: float) -> str | None:
    """A target-stage search trains the source model once (the pipeline's stage 1) before any trial."""
    from .jobs import ensure_dispatcher, reconcile

    source = search.stage("source")
    if not source.config_path.exists():
        source.write_config("train", cfg.pipeline.source.replace(name=f"{cfg.name or 'search'}: source",
                                                                 init_from=None).to_dict(),
                            parent=search.run_id, stage="source")
        write_json_atomic(source.status_path, {"state": "queued", "created_at": now(), "queued_at": now()})
    elif source.status().get("state") in ("stopped", "interrupted", "failed"):
        _requeue(source)
    ensure_dispatcher()
    search.update_status(phase="training the source model the trials start from")
    while True:
        reconcile()
        state = source.status().get("state")
        if state == "completed":
            search.update_status(phase="searching")
            return source.run_id
        if search.stop_requested():
            if state == "queued":
                source.update_status(state="stopped", ended_at=now())
            elif state in ("running", "stopping"):
                source.request_stop()
            if source.status().get("state") in TERMINAL_STATES:
                return None
        elif state in TERMINAL_STATES:
            raise RuntimeError(f"the source model {source.run_id} is {state}: {source.status().get('error') or ''}")
        time.sleep(poll)


def _counts(trials) -> dict[str, int]:
    from optuna.trial import TrialState

    n = {s: sum(t.state == s for t in trials) for s in TrialState}
    return {"completed": n[TrialState.COMPLETE], "pruned": n[TrialState.PRUNED], "failed": n[TrialState.FAIL],
            "running": n[TrialState.RUNNING], "finished": n[TrialState.COMPLETE] + n[TrialState.PRUNED]}


def _last_error(search: RunDir) -> str:
    for run in reversed(trial_runs(search)):
        if run.status().get("error"):
            return run.status()["error"]
    return "no error recorded"


def _write_status(search: RunDir, study, cfg: SearchConfig, counts: dict[str, int]) -> None:
    results = study_results(search, study, cfg)
    write_json_atomic(search.path / "results.json", results)
    best = results["best"]
    search.update_status(step=counts["finished"], total_steps=cfg.trials, trials=counts, best=best,
                         metrics={"best_value": best["value"], "metric": cfg.metric} if best else {})


def _stopped(search: RunDir, study, cfg: SearchConfig) -> dict[str, Any]:
    _write_status(search, study, cfg, _counts(study.get_trials(deepcopy=False)))
    search.stop_flag.unlink(missing_ok=True)
    search.log("stopped; `resume` continues it")
    return search.update_status(state="stopped", ended_at=now())


def _finish(search: RunDir, study, cfg: SearchConfig) -> dict[str, Any]:
    _write_status(search, study, cfg, _counts(study.get_trials(deepcopy=False)))
    best = search.status().get("best")
    if best:
        search.log(f"best: trial {best['number'] + 1} ({best['run_id']}): {cfg.metric} {best['value']:.4f} with "
                   + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items()))
    return search.update_status(state="completed", ended_at=now())


# ---------------------------------------------------------------------------------------
# Reading a search
def study_results(search: RunDir, study=None, cfg: SearchConfig | None = None) -> dict[str, Any]:
    """`{"best": {run_id, number, params, value}, "trials": [{number, run_id, state, params, value}]}`, from the
    study (the search's record of every trial)."""
    cfg = cfg or search_config(search)
    study = study or open_study(search.run_id, cfg)
    trials = []
    for t in study.get_trials(deepcopy=False):
        run_id = t.user_attrs.get("run_id")
        trials.append({"number": t.number, "run_id": run_id, "state": t.state.name.lower(), "params": t.params,
                       "value": t.value, "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
                       "run_state": RunDir.for_id(run_id).status().get("state") if run_id else None})
    done = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
    best = None
    if done:
        pick = max if cfg.direction == "maximize" else min
        b = pick(done, key=lambda t: t["value"])
        best = {"run_id": b["run_id"], "number": b["number"], "params": b["params"], "value": b["value"]}
    return {"search_id": search.run_id, "metric": cfg.metric, "direction": cfg.direction, "trials_wanted": cfg.trials,
            "best": best, "trials": trials, "updated_at": now()}


def read_results(search: RunDir) -> dict[str, Any]:
    """What `results SEARCH` prints: the study as it stands (results.json, which the worker writes, when the
    study cannot be opened)."""
    try:
        return study_results(search)
    except Exception as exc:  # a search whose study is gone (artifacts/optuna.db deleted): its last record
        saved = read_json(search.path / "results.json")
        if isinstance(saved, dict):
            return saved
        raise ValueError(f"run: {search.run_id}: its study cannot be read ({error_line(exc)})") from None


# ---------------------------------------------------------------------------------------
# The search kind's check, preset, results and deletion (core/kinds.py)
def check_search(cfg: SearchConfig) -> SearchConfig:
    from .training import preflight

    pcfg = cfg.pipeline
    for stage in ([pcfg.source, pcfg.target] if pcfg else [cfg.stage_config()]):
        preflight(stage)
    return cfg


def preset_search(name: str) -> SearchConfig:
    from .config import load_preset

    return SearchConfig(base=load_preset(name).to_dict())


def report(search: RunDir, **_: Any):
    """`results SEARCH`: its trials so far and the best."""
    from .kinds import Report

    out = read_results(search)
    state = search.status().get("state")
    data = {"search_id": out["search_id"], "state": state, "metric": out["metric"], "direction": out["direction"],
            "best": out["best"], "trials": [{k: t.get(k) for k in ("number", "run_id", "state", "params", "value",
                                                                   "intermediate")} for t in out["trials"]]}
    lines = [f"search {out['search_id']}: {state}, {out['metric']} ({out['direction']})"]
    for t in out["trials"]:
        # a pruned trial's value is its last validation report, not the metric: in brackets
        value = "" if t["value"] is None else f"({t['value']:.4f})" if t["state"] == "pruned" else f"{t['value']:.4f}"
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        lines.append(f"  {t['number'] + 1:>3}  {t['run_id'] or '':44} {t['state']:9} {value:>8}  {params}")
    if out["best"]:
        lines.append(f"best: {out['best']['run_id']} ({out['metric']} {out['best']['value']:.4f}); "
                     f"python -m core presets --from-run {out['best']['run_id']} > best.json")
    return Report(data, "\n".join(lines))


def delete_study(search: RunDir) -> None:
    """A deleted search's study goes with it."""
    import optuna

    try:
        optuna.delete_study(study_name=search.run_id, storage=studies_url())
    except KeyError:
        pass
