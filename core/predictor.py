"""Scoring: one inference path for evaluation, `predict`, the Try page and benchmarks."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .config import Reading
from .data import LABEL_NAMES, Encoder
from .errors import ConfigError
from .metrics import saved_temperature, with_temperature
from .runs import RunDir
from .terminal import Terminal


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
            raise ConfigError("model", f"no model in {folder} (deleted, or the run has not finished)")
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
