"""Scoring: one inference path for evaluation, `predict`, the Try page and benchmarks."""

from __future__ import annotations

import copy
import csv
import dataclasses
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .config import INFERENCE_FILE, EvalConfig, Reading
from .data import LABEL_NAMES, Encoder, Examples
from .runs import RunDir, Terminal, now, write_json_atomic

MAX_REVIEW_CHARS = 10_000_000  # a 1 MB review is fine: the encoder keeps what the budget can use
MAX_EXPLAINED_WORDS = 200  # word effects cost one forward pass per word
# Tokens (rows x padded width) per forward pass: a CPU is fastest with a batch that stays in its caches, a GPU
# needs many rows to fill it (docs/experiments.md, "Speed").
TOKENS_PER_BATCH = {"cpu": 4096, "cuda": 65536}


class Predictor:
    """A loaded model plus the way it reads a review (its `Reading`). Read-only after construction.

    The one scoring path: reviews tokenized once, sorted by length into batches of up to `batch_size` reviews
    and the device's token budget, each padded only to its longest review, under `torch.inference_mode()`, with
    the weights cast to the precision the hardware computes fastest (`precision`, see `resolve_precision`).
    """

    def __init__(self, model, tokenizer, reading: Reading | None = None, batch_size: int = 64, name: str = "",
                 precision: str = "auto", temperature: float = 1.0):
        import torch

        from .modeling import keep_freed_memory, resolve_precision

        keep_freed_memory()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.precision = resolve_precision(precision)
        self.model = model.to(device=self.device, dtype=self.precision.dtype).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.tokens_per_batch = TOKENS_PER_BATCH[self.device]
        self.name = name
        self.temperature = temperature  # fitted on the validation split after training; labels never change
        self._read_as(reading or Reading())

    def _read_as(self, reading: Reading) -> None:
        self.reading = reading
        self.encoder = Encoder(self.tokenizer, reading.max_length, reading.truncation, reading.head_fraction)

    def reading_as(self, reading: Reading | None = None, **changes: Any) -> "Predictor":
        """The same loaded model (shared, not copied) reading reviews another way: `other.reading` (how the
        pipeline's zero-shot row scored the source model, with the target stage's reading) or some changes."""
        other = copy.copy(self)
        other._read_as((reading or self.reading).replace(**changes))
        return other

    @classmethod
    def from_folder(cls, folder: str | Path, name: str = "", reading: Reading | None = None,
                    **options: Any) -> "Predictor":
        """The model in `folder`, reading as it was saved to (or as `reading` says); `options` that are Reading
        fields change that reading (None leaves one as it is), the rest go to the constructor."""
        from .modeling import load_model, load_tokenizer

        folder = Path(folder)
        if not (folder / "config.json").exists():
            raise ValueError(f"model: no model in {folder} (deleted, or the run has not finished)")
        fields = {f.name for f in dataclasses.fields(Reading)}
        changes = {k: v for k, v in options.items() if k in fields and v is not None}
        reading = (reading or Reading.load(folder)).replace(**changes)
        rest = {"temperature": saved_temperature(folder), **{k: v for k, v in options.items() if k not in fields}}
        return cls(load_model(str(folder)), load_tokenizer(str(folder)), reading, name=name or folder.name, **rest)

    @classmethod
    def from_run(cls, ref: str, **options: Any) -> "Predictor":
        run = RunDir.find(ref, anywhere=True)
        return cls.from_folder(run.require_model(), name=run.run_id, **options)

    @property
    def scoring(self) -> str:
        return self.reading.label()

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(negative), P(positive) per text, averaged over the windows read (see `read`), then calibrated by the
        model's temperature."""
        return with_temperature(self.read(texts)[0], self.temperature)

    def read(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities per text before calibration, and how many of its windows were scored (`read_windows`)."""
        ids, owner = self.encoder.windows(list(texts), self.reading.windows)
        return read_windows(owner, len(texts), lambda picked: self.score_ids([ids[w] for w in picked]),
                            self.reading.confidence)

    def score_ids(self, ids: list[list[int]]) -> np.ndarray:
        """Softmax probabilities per token sequence."""
        import torch

        probs = np.zeros((len(ids), 2), dtype=np.float32)
        pad = self.tokenizer.pad_token_id or 0
        batches = length_batches([len(x) for x in ids], self.batch_size, self.tokens_per_batch)
        bar = None
        if Terminal.bars() and len(ids) > 500:  # a bar where scoring takes a while, not for the Try page's one review
            from tqdm.auto import tqdm

            bar = tqdm(total=len(ids), unit="window", desc=f"scoring ({self.name})", file=Terminal.stream, leave=False)
        done = 0
        with torch.inference_mode():
            for idx in batches:
                width = len(ids[idx[-1]])  # sorted by length: the last is the longest
                input_ids = np.full((len(idx), width), pad, dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.int64)
                for row, i in enumerate(idx):
                    input_ids[row, : len(ids[i])] = ids[i]
                    mask[row, : len(ids[i])] = 1
                logits = self.model(input_ids=torch.from_numpy(input_ids).to(self.device),
                                    attention_mask=torch.from_numpy(mask).to(self.device)).logits
                probs[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
                done += len(idx)
                if bar is not None:
                    bar.update(len(idx))
                if len(ids) > 500:
                    Terminal.doing = f"{self.name}: scoring, {done:,} of {len(ids):,} windows"
        if bar is not None:
            bar.close()
        return probs

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        for i, text in enumerate(texts):
            check_review(text, where=f"review {i + 1}" if len(texts) > 1 else "review")
        probs = self.predict_proba(texts)
        return [{"label": LABEL_NAMES[int(p.argmax())], "probability": float(p.max()), "p_positive": float(p[1])}
                for p in probs]

    def word_effects(self, text: str, max_words: int = MAX_EXPLAINED_WORDS) -> list[tuple[str, float]]:
        """Each word of a review with how much it moves P(positive): the probability with the review as it is,
        minus the probability with that one word left out (occlusion: no gradients, any model, read exactly as
        `predict` reads). Positive: the word pushes towards positive. One forward pass per word, so short
        reviews only."""
        check_review(text)
        words = text.split()
        if len(words) > max_words:
            raise ValueError(f"review: has {len(words):,} words; word effects are measured for up to {max_words}")
        variants = [text] + [" ".join(words[:i] + words[i + 1:]) or "." for i in range(len(words))]
        p_positive = self.predict_proba(variants)[:, 1]
        return [(word, float(p_positive[0] - p_positive[i + 1])) for i, word in enumerate(words)]


def length_batches(lengths: Sequence[int], max_rows: int, max_tokens: int) -> list[np.ndarray]:
    """Indices of `lengths` sorted shortest first and cut into batches of at most `max_rows` rows and at most
    `max_tokens` tokens once padded to the batch's longest row (always at least one row)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    out, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < max_rows and (end - start + 1) * lengths[order[end]] <= max_tokens:
            end += 1
        out.append(order[start:end])
        start = end
    return out


def reading_order(owner: np.ndarray, n_texts: int) -> list[list[int]]:
    """Each text's windows in the order an adaptive reading scores them: the end, the start, then the middle."""
    per_text: list[list[int]] = [[] for _ in range(n_texts)]
    for w, t in enumerate(owner):
        per_text[t].append(w)
    return [ws[-1:] + ws[:-1] for ws in per_text]


def read_windows(owner: np.ndarray, n_texts: int, score: Callable[[np.ndarray], np.ndarray],
                 confidence: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Average each text's window probabilities; return them and how many windows each text read.

    `owner[w]` is the text window `w` belongs to (in order: start, ..., end) and `score(windows)`
    gives their probabilities. At `confidence` 1.0 every window is scored, in one pass. Below it a
    long review is read from its end (where reviewers give their verdict), then its start, then the
    windows between, and reading stops as soon as the average so far gives one label that
    probability: a review the model is sure of after one window costs one window, and the compute
    goes to the reviews it is unsure of.
    """
    sums = np.zeros((n_texts, 2), dtype=np.float32)
    reads = np.zeros(n_texts, dtype=np.int64)
    if confidence >= 1.0 or len(owner) == n_texts:
        np.add.at(sums, owner, score(np.arange(len(owner))))
        np.add.at(reads, owner, 1)
        return sums / reads[:, None], reads
    order = reading_order(owner, n_texts)
    pending = np.arange(n_texts)
    for k in range(max(len(o) for o in order)):
        pending = pending[[k < len(order[t]) for t in pending]]
        if not len(pending):
            break
        sums[pending] += score(np.asarray([order[t][k] for t in pending]))
        reads[pending] += 1
        sure = (sums[pending] / reads[pending, None]).max(axis=1) >= confidence
        pending = pending[~sure]
    return sums / reads[:, None], reads


def check_review(text: Any, where: str = "review") -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: is empty")
    if len(text) > MAX_REVIEW_CHARS:
        raise ValueError(f"{where}: is {len(text):,} characters; the limit is {MAX_REVIEW_CHARS:,}")


# ---------------------------------------------------------------------------------------
def classification_metrics(labels: np.ndarray, preds: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 and the 2x2 confusion matrix (rows: true label, columns: predicted)."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    confusion = np.zeros((2, 2), dtype=int)
    np.add.at(confusion, (labels, preds), 1)
    f1s = []
    for c in (0, 1):
        tp = confusion[c, c]
        denom = confusion[c, :].sum() + confusion[:, c].sum()
        f1s.append(2 * tp / denom if denom else 0.0)
    return {"accuracy": float((labels == preds).mean()) if len(labels) else 0.0, "f1": float(np.mean(f1s)),
            "n": int(len(labels)), "confusion": confusion.tolist()}


def accuracy_by_group(right: np.ndarray, groups: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Accuracy and count per value of `groups` (a column such as Amazon's `domain`), given which
    predictions were right."""
    right, groups = np.asarray(right, dtype=bool), np.asarray([str(g) for g in groups])
    return {g: {"accuracy": round(float(right[groups == g].mean()), 4), "n": int((groups == g).sum())}
            for g in sorted(set(groups))}


def eval_name(source: str) -> str:
    """`imdb:test[:2000]` -> `imdb-test-2000`: a folder name under evals/."""
    return re.sub(r"[^A-Za-z0-9]+", "-", source).strip("-").lower() or "eval"


def single_label(confusion: list[list[int]] | None) -> str | None:
    """The one label every scored review has (rows of the confusion matrix: the true labels), else None. Such a
    score only says how often the model gives that label: the first rows of a split sorted by label (the Hub's
    imdb) cut by max_eval_samples, most likely."""
    present = [LABEL_NAMES[i] for i, row in enumerate(confusion or []) if sum(row)]
    return present[0] if len(present) == 1 else None


def single_prediction(confusion: list[list[int]] | None) -> str | None:
    """The one label the model gave every scored review, where the reviews have both labels, else None (columns of
    the confusion matrix: the predictions). A model that has not learnt to tell the labels apart (too few steps,
    a learning rate too high or too low) says the same thing to every review, and its accuracy is then only the
    share of that label: 0.5 on a balanced test, which reads like a bad model rather than no model."""
    if not confusion or single_label(confusion):
        return None
    given = [LABEL_NAMES[j] for j in range(len(confusion[0])) if sum(row[j] for row in confusion)]
    return given[0] if len(given) == 1 else None


def one_answer_note(metrics: dict[str, Any]) -> str:
    """What an evaluation's figures mean when its model gave every review the same label, else ""."""
    label = single_prediction(metrics.get("confusion"))
    return (f"the model says {label} for all {metrics['n']} reviews: it has not learnt to tell the labels apart, so "
            f"its accuracy is only the share of {label} reviews (train it on more reviews or for more steps, or at "
            "another learning rate)") if label else ""


# ---------------------------------------------------------------------------------------
# Calibration: how far to trust a probability
CALIBRATION_BINS = 15


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): temperature scaling of a review's final probabilities. For one window that is exactly
    softmax(logits / T); for several it scales their average, so the label (the argmax) never changes."""
    if temperature == 1.0 or not len(probs):
        return probs
    logp = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    picked = np.clip(probs[np.arange(len(labels)), labels].astype(np.float64), 1e-12, 1.0)
    return float(-np.log(picked).mean()) if len(labels) else 0.0


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Expected calibration error over `bins` equal-width bins of confidence (the predicted label's probability;
    bin i holds confidences in (i/bins, (i+1)/bins], the first also 0), the Brier score of P(positive), the NLL, and
    the reliability diagram's bins: each non-empty bin's count, mean confidence and accuracy."""
    labels = np.asarray(labels)
    if not len(labels):
        return {"ece": 0.0, "brier": 0.0, "nll": 0.0, "reliability": []}
    confidence = probs.max(axis=1).astype(np.float64)
    right = probs.argmax(axis=1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        conf, acc = float(confidence[inside].mean()), float(right[inside].mean())
        ece += inside.mean() * abs(acc - conf)
        table.append({"lo": round(b / bins, 4), "hi": round((b + 1) / bins, 4), "n": int(inside.sum()),
                      "confidence": round(conf, 4), "accuracy": round(acc, 4)})
    brier = float(np.mean((probs[:, 1].astype(np.float64) - (labels == 1)) ** 2))
    return {"ece": round(float(ece), 5), "brier": round(brier, 5), "nll": round(nll(probs, labels), 5),
            "reliability": table}


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the NLL of `with_temperature(probs, T)`. The NLL is convex in 1/T, so a
    ternary search over log(1/T) in [1/20, 20] finds it; T=1 where there is nothing to fit."""
    labels = np.asarray(labels)
    if len(labels) < 2 or len(np.unique(labels)) < 2:
        return 1.0
    lo, hi = np.log(1 / 20), np.log(20)
    for _ in range(80):
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if nll(with_temperature(probs, float(np.exp(-a))), labels) <= nll(with_temperature(probs, float(np.exp(-b))), labels):
            hi = b
        else:
            lo = a
    return round(float(np.exp(-(lo + hi) / 2)), 4)


def saved_temperature(model_dir: str | Path) -> float:
    from .runs import read_json

    saved = read_json(Path(model_dir) / INFERENCE_FILE, {}) or {}
    return float((saved.get("calibration") or {}).get("temperature") or 1.0)


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
    from .training import preflight_dataset

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
