"""Every kind of job in one table: what a kind's settings are, what it checks before a folder is made, what it asks
of a backend, what runs it, what its children are, and how its results are read. The queue, the worker, the
backends, the command line and the pages look a kind up here, in the manner of transformers' `SUPPORTED_TASKS`
(task -> implementation, model class, defaults); none of them switches on a kind's name.

A kind's functions are named as `"module:function"` and imported when first used, so that `python -m core --help`
and the app's start-up do not import torch. A new kind is one `register(JobKind(...))`: in this file for the lab's
own, or in a module named in `SENTIMENT_LAB_KINDS` (comma-separated, importable from the project root), which the
registry imports in every process (the CLI, the dispatcher, each worker).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

PLUGINS_ENV = "SENTIMENT_LAB_KINDS"


def load(ref: str | Callable | None) -> Any:
    """`"core.pipeline:run_pipeline"` -> that function (a callable is returned as it is)."""
    if ref is None or callable(ref):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _trains_itself(config: dict) -> dict:
    return {"": config}


def _scores_nothing(config: dict) -> None:
    return None


@dataclass(frozen=True)
class Report:
    """What `results RUN` prints: `data` with --json, `text` without, and `notes` on stderr either way."""

    data: dict[str, Any]
    text: str
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobKind:
    name: str
    help: str
    settings: str                      # its settings class: from_dict, to_dict, with_overrides, validate
    runner: str                        # (settings, RunDir, resume) -> status; the worker's body
    check: str | None = None           # (settings) -> settings, before a folder is made: what can be known at once
    results: str | None = None         # (RunDir, **options) -> Report: `results RUN [--json]`
    preset: str | None = None          # (preset name) -> settings: what `--preset NAME` gives this kind
    # What it trains, as {"stage name": RunConfig dict}: the index's model and data, what a backend is asked for.
    trains: Callable[[dict], dict] = _trains_itself
    scores: Callable[[dict], str | None] = _scores_nothing  # the run whose model it reads, if any
    child: str | None = None           # what its `<id>.<name>` folders are called: stage, trial
    children_apart: bool = False       # its children are workers of their own (a search's), not its own process's
    holds_slot: bool = True            # its worker trains or scores (a search's only asks and tells)
    stop_wait: float | None = None     # seconds a stop waits for the flag before signals (None: the caller's)
    resumes_itself: bool = False       # queued or running with a child lost: it goes on by itself
    has_model: bool = False            # a finished run of it has a model/ to score, export and start from
    config_file: bool = False          # its config.json is a file `train` / `pipeline --config` take
    page: tuple[str, str, str] | None = None  # (page, query key, link label): where its results are shown
    on_delete: str | None = None       # (RunDir) -> None: what else goes when it is deleted
    launchable: bool = True            # `launch KIND`; a trial is queued by its search only

    @property
    def trains_models(self) -> bool:
        """It logs training curves (an evaluation only scores)."""
        return bool(self.trains({}))

    def settings_class(self) -> type:
        return load(self.settings)

    def make(self, data: dict[str, Any]):
        """The settings from a config.json."""
        return self.settings_class().from_dict(data)

    def processes(self, config: dict[str, Any]) -> int:
        """The processes its worker trains with at most (stages run one after another); 0 when it trains none."""
        if not self.holds_slot:
            return 0
        return max([int((c or {}).get("num_processes") or 1) for c in self.trains(config).values()] or [1])

    def machines(self, config: dict[str, Any]) -> int:
        return max([int((c or {}).get("num_machines") or 1) for c in self.trains(config).values()] or [1])

    def describe(self, config: dict[str, Any]) -> tuple[str | None, str | None]:
        """The index's model and data columns: the model it trains (or the run it scores) and `source → target`."""
        stages = self.trains(config)
        first = next(iter(stages.values()), None) or {}
        datasets = [str(c.get("dataset")) for c in stages.values() if isinstance(c, dict) and c.get("dataset")]
        model = self.scores(config) or first.get("model")
        dataset = config.get("dataset") if self.scores(config) else " → ".join(dict.fromkeys(datasets)) or None
        return model, dataset

    def reads(self, config: dict[str, Any]) -> list[str]:
        """The runs (ids, or folders inside them) whose models it reads: what it scores, or starts from."""
        refs = [self.scores(config)] + [(c or {}).get("init_from") for c in self.trains(config).values()]
        return [r for r in refs if r]


REGISTRY: dict[str, JobKind] = {}
_plugins_loaded = False


def register(kind: JobKind) -> JobKind:
    REGISTRY[kind.name] = kind
    return kind


def kinds() -> dict[str, JobKind]:
    """Every kind: the lab's own and those of the modules in SENTIMENT_LAB_KINDS."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ValueError(f"{PLUGINS_ENV}: cannot import {module!r} ({exc})") from None
    return REGISTRY


def get(name: str) -> JobKind:
    try:
        return kinds()[name]
    except KeyError:
        raise ValueError(f"kind: {name!r} is not a kind of job (known: {', '.join(kinds())})") from None


def of(run) -> JobKind:
    """The kind of a run folder."""
    return get(run.job()["kind"])


def parent_kind(run) -> JobKind | None:
    from .runs import RunDir

    parent = run.job()["parent"]
    return of(RunDir.for_id(parent)) if parent else None


# ---------------------------------------------------------------------------------------
# The lab's own kinds
def _pipeline_stages(c: dict) -> dict:
    return {"source": c.get("source") or {}, "target": c.get("target") or {}}


def _base_stages(c: dict) -> dict:
    base = c.get("base") or {}
    return _pipeline_stages(base) if "source" in base else {"": base}


register(JobKind(
    "train", "fine-tune one model", settings="core.config:RunConfig", runner="core.worker:run_training",
    check="core.training:check_run", preset="core.config:preset_source", has_model=True, config_file=True))

register(JobKind(
    "trial", "one trial of a search: a training run that reports to its study", settings="core.config:RunConfig",
    runner="core.search:run_trial", has_model=True, config_file=True, launchable=False))

register(JobKind(
    "pipeline", "the transfer experiment: source, zero-shot, target, baseline",
    settings="core.config:PipelineConfig", runner="core.pipeline:run_pipeline", check="core.pipeline:check_pipeline",
    results="core.pipeline:report", preset="core.config:load_preset", trains=_pipeline_stages, child="stage",
    config_file=True, page=("pages/transfer.py", "pipeline", "Its comparison table, on the Transfer page")))

register(JobKind(
    "eval", "score a finished run's model on a dataset", settings="core.config:EvalConfig",
    runner="core.evaluation:run_eval", check="core.evaluation:check_eval", results="core.evaluation:report",
    trains=lambda c: {}, scores=lambda c: c.get("run"), stop_wait=0))

register(JobKind(
    "curve", "the data-efficiency curve: transfer against a target-only model per label budget",
    settings="core.curve:CurveConfig", runner="core.curve:run_curve", check="core.curve:check_curve",
    results="core.curve:report", preset="core.curve:preset_curve", trains=_base_stages, child="stage",
    page=("pages/transfer.py", "curve", "Its curve, on the Transfer page")))

register(JobKind(
    "search", "an Optuna hyperparameter search, each trial a run of its own", settings="core.search:SearchConfig",
    runner="core.search:run_search", check="core.search:check_search", results="core.search:report",
    preset="core.search:preset_search", trains=_base_stages, child="trial", children_apart=True, holds_slot=False,
    resumes_itself=True, on_delete="core.search:delete_study",
    page=("pages/search.py", "search", "Its trials and charts, on the Search page")))
