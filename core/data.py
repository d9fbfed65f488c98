"""Datasets: the Hub (`amazon_polarity`, `imdb`) or local parquet / csv / jsonl, as (text, label) rows.

Splits follow one rule: checkpoint selection and early stopping see `validation`, which is carved
from the train split; `test` is only ever scored at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError
from .paths import LOCAL_FORMATS, artifacts_root, hub_reachable, looks_like_path, resolve_local, unreachable

TEXT_FIELD_GUESSES = (("title", "content"), ("text",), ("review",), ("content",), ("sentence",), ("body",))
LABEL_NAMES = ("negative", "positive")
_LABEL_WORDS = {"neg": 0, "negative": 0, "pos": 1, "positive": 1, "false": 0, "true": 1}
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
# Columns that evaluations break accuracy down by, the first one a dataset has (with at most MAX_GROUPS values):
# Amazon multi-domain's product `domain`; core/other_sources.csv's `source`.
GROUP_FIELDS = ("domain", "source", "category")
MAX_GROUPS = 20


@dataclass
class Examples:
    """Rows ready for tokenizing: review text, 0/1 label, and the row's index in its source split."""

    texts: list[str]
    labels: np.ndarray
    rows: np.ndarray
    source: str  # human-readable origin, e.g. "imdb:test[:2000]"
    # A column that sorts the rows into a few groups (Amazon's product `domain`), so that evaluations also
    # report accuracy per group: where a model forgets, or what transfers. None when the data has none.
    group_field: str | None = None
    groups: np.ndarray | None = None
    # Source rows left out because their review text is empty or whitespace only: nothing to score or learn
    # from, but a user scoring a file must be told, or predictions silently stop lining up with its rows.
    skipped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "Examples":
        idx = np.asarray(idx, dtype=int)
        return Examples([self.texts[i] for i in idx], self.labels[idx], self.rows[idx], self.source,
                        self.group_field, None if self.groups is None else self.groups[idx])

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for text, label in zip(self.texts, self.labels.tolist()):
            h.update(text.encode("utf-8", "replace"))
            h.update(b"\x00%d\x01" % label)
        return h.hexdigest()[:20]

    def label_counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(LABEL_NAMES)}

    def skipped_note(self) -> str:
        return skipped_note(self.skipped, self.source)

    def one_class_note(self) -> str:
        """`all 2000 reviews in imdb:train[:2000] are negative`, or "" when both labels are there. The Hub's imdb
        splits are sorted by label, so "the first N rows" of one can be a single class without any warning."""
        present = [name for name, count in self.label_counts().items() if count]
        if len(present) != 1:
            return ""
        return f"all {len(self)} reviews in {self.source} are {present[0]}" if len(self) > 1 else \
            f"the one review in {self.source} is {present[0]}"


def skipped_note(rows: Sequence[int], where: str, limit: int = 10) -> str:
    """`2 empty reviews skipped in imdb:test (rows 3, 17)`, or "" when none was. Rows count from 0."""
    n = len(rows)
    if not n:
        return ""
    shown = ", ".join(str(int(r)) for r in rows[:limit]) + (", ..." if n > limit else "")
    return f"{n} empty review{'s' if n > 1 else ''} skipped in {where} (row{'s' if n > 1 else ''} {shown})"


@dataclass
class Splits:
    train: Examples
    validation: Examples
    test: Examples | None


# ---------------------------------------------------------------------------------------
def _local_split_file(folder: Path, split: str) -> Path | None:
    for ext in LOCAL_FORMATS:
        for candidate in (folder / f"{split}{ext}", folder / "data" / f"{split}{ext}"):
            if candidate.is_file():
                return candidate
    return None


def load_table(dataset: str, split: str, dataset_config: str | None = None):
    """A `datasets.Dataset` for one split: a local file (whatever `split`), a folder's `<split>.*`, or the Hub."""
    import datasets

    datasets.disable_progress_bars()
    local = resolve_local(dataset)
    if local is None and looks_like_path(dataset):
        raise ConfigError("dataset", f"no such file or folder: {dataset}")
    if local is not None:
        path = local if local.is_file() else _local_split_file(local, split)
        if path is None:
            raise ConfigError("dataset", f"no '{split}' file (.parquet, .csv or .jsonl) in {local}")
        fmt = LOCAL_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ConfigError("dataset", f"{path.name} is not .parquet, .csv or .jsonl")
        if path.stat().st_size == 0:
            raise ConfigError("dataset", f"{path} is empty")
        # The file's readers log their parser error before raising it; the ValueError below says it in one line.
        readers = logging.getLogger("datasets.packaged_modules")
        level = readers.level
        readers.setLevel(logging.CRITICAL)
        try:
            return datasets.load_dataset(fmt, data_files=str(path), split="train")
        except Exception as exc:  # pyarrow / pandas parser errors are long: keep their first line
            raise ConfigError("dataset", f"cannot read {path.name} as {fmt}: {_first_line(exc)}") from None
        finally:
            readers.setLevel(level)

    if not hub_reachable() and not dataset_cached(dataset):
        raise unreachable("dataset", dataset)
    try:
        return datasets.load_dataset(dataset, dataset_config, split=split)
    except Exception as exc:
        raise ConfigError("dataset", f"cannot load {dataset!r} split {split!r} from the Hub: {_first_line(exc)}") from None


def dataset_cached(name: str) -> bool:
    """`datasets`' cache holds a prepared copy of the Hub dataset `name` (<cache>/<name>/<config>/<version>/<hash>),
    which `load_dataset(name)` reads when the Hub cannot be reached."""
    from datasets import config

    return any(p.is_dir() for p in Path(config.HF_DATASETS_CACHE, name.replace("/", "___")).glob("*/*/*"))


def guess_text_fields(columns: Sequence[str]) -> list[str]:
    for guess in TEXT_FIELD_GUESSES:
        if all(c in columns for c in guess):
            return list(guess)
    raise ConfigError("text_fields", f"cannot guess the text column among {list(columns)}; set text_fields")


def map_labels(values: Sequence[Any]) -> np.ndarray:
    """0/1, 1/2 (amazon_polarity's CSV), neg/pos, negative/positive, true/false -> 0 = negative, 1 = positive."""
    missing = sum(1 for v in values if v is None or (isinstance(v, float) and math.isnan(v)))
    if missing:
        raise ConfigError("label_field", f"{missing} row(s) have no label")
    words = [str(v).strip().lower() for v in values]
    if all(w in _LABEL_WORDS for w in words):
        return np.array([_LABEL_WORDS[w] for w in words], dtype=np.int64)
    try:
        numbers = [float(w) for w in words]
    except ValueError:
        odd = sorted({w for w in words if w not in _LABEL_WORDS})[:5]
        raise ConfigError("label_field", f"cannot map labels {odd} to negative/positive "
                         "(expected 0/1, 1/2, neg/pos or negative/positive)") from None
    found = sorted(set(numbers))
    if set(found) <= {0.0, 1.0}:
        return np.array(numbers, dtype=np.int64)
    if set(found) <= {1.0, 2.0}:
        return np.array(numbers, dtype=np.int64) - 1
    raise ConfigError("label_field", f"cannot map labels {[_num(x) for x in found[:5]]} to negative/positive "
                     "(expected 0/1, 1/2, neg/pos or negative/positive)")


def clean_text(text: Any) -> str:
    """IMDB keeps `<br />` tags from its HTML source; they are line breaks, not words."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    return _BR.sub(" ", str(text)).strip()


def join_fields(parts: Sequence[str]) -> str:
    """`title` + `content` -> "Great kettle. Boils fast..." (a full stop only where the title has none)."""
    out = ""
    for part in parts:
        if not part:
            continue
        if out and not out.endswith((".", "!", "?", ":", ";")):
            out += "."
        out = f"{out} {part}" if out else part
    return out


def review_texts(columns: Sequence[Sequence[Any]]) -> list[str]:
    """Each row's review, its text fields cleaned and joined (`title` + `content`); "" for an empty one."""
    return [join_fields([clean_text(value) for value in row]) for row in zip(*columns)]


def to_examples(table, text_fields: Sequence[str], label_field: str, source: str,
                rows: Sequence[int] | None = None, require_labels: bool = True, by: str | None = None) -> Examples:
    """Select `rows` of a datasets table, check its columns, build text and map labels; group the rows by
    the column `by`, or by default by the first of GROUP_FIELDS the table has."""
    columns = list(table.column_names)
    if by is not None and by not in columns:
        raise ConfigError("by", f"column {by!r} is not in {source} (columns: {', '.join(columns)})")
    fields = list(text_fields) or guess_text_fields(columns)
    for name in fields:
        if name not in columns:
            raise ConfigError("text_fields", f"column {name!r} is not in {source} (columns: {', '.join(columns)})")
    if require_labels and label_field not in columns:
        raise ConfigError("label_field", f"column {label_field!r} is not in {source} (columns: {', '.join(columns)})")
    rows = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=int)
    part = table.select(rows.tolist()) if len(rows) != len(table) else table
    texts = review_texts([part[name] for name in fields])
    labels = map_labels(part[label_field]) if require_labels else np.full(len(part), -1, dtype=np.int64)
    keep = np.array([bool(t) for t in texts])
    if not keep.any():
        raise ConfigError("text_fields", f"every review in {source} is empty")
    group_field = by or next((c for c in GROUP_FIELDS if c in columns and c not in fields), None)
    groups = np.asarray([str(g) for g in part[group_field]], dtype=object) if group_field else None
    if by is None and groups is not None and len(set(groups)) > MAX_GROUPS:  # an id or free text, not a grouping
        group_field, groups = None, None
    ex = Examples(texts, labels, rows, source, group_field, groups)
    if keep.all():
        return ex
    ex = ex.subset(np.flatnonzero(keep))
    ex.skipped = rows[~keep]
    return ex


def per_label_sample(rows: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `n` of `rows` per label (`labels[i]` is the label of `rows[i]`), drawn by `rng`, in row order: the
    balanced sample of `samples_per_class` for training and for evaluation alike."""
    return np.sort(np.concatenate([rng.choice(rows[labels == c], size=min(n, int((labels == c).sum())), replace=False)
                                   for c in (0, 1)]))


def load_splits(cfg) -> Splits:
    """train / validation / test for a RunConfig, with the carving rules in one place."""
    rng = np.random.default_rng(cfg.seed)
    is_file = (resolve_local(cfg.dataset) or Path("")).is_file()
    table = load_table(cfg.dataset, cfg.train_split, cfg.dataset_config)
    n = len(table)
    if n < 4:
        raise ConfigError("dataset", f"{cfg.dataset} has {n} rows in {cfg.train_split!r}; at least 4 are needed")
    all_rows = np.arange(n)

    test = None
    if is_file:
        # One file holds everything: hold out a seeded 20% as the test split before anything else.
        perm = rng.permutation(n)
        cut = max(1, n // 5)
        test_rows, all_rows = np.sort(perm[:cut]), np.sort(perm[cut:])
        if cfg.max_eval_samples:
            test_rows = test_rows[: cfg.max_eval_samples]
        test = to_examples(table, cfg.text_fields, cfg.label_field, f"{Path(cfg.dataset).name}[held-out]", test_rows)

    label_column = map_labels(table[cfg.label_field]) if cfg.label_field in table.column_names else None
    if cfg.samples_per_class:
        if label_column is None:
            raise ConfigError("label_field", f"column {cfg.label_field!r} is not in {cfg.dataset}")
        train_rows = per_label_sample(all_rows, label_column[all_rows], cfg.samples_per_class, rng)
    elif cfg.max_train_samples and len(all_rows) > cfg.max_train_samples:
        train_rows = all_rows[: cfg.max_train_samples]  # "the first N", like run_classification.py
    else:
        train_rows = all_rows

    base = len(train_rows)
    val_n = int(cfg.validation_size) if cfg.validation_size >= 1 else max(2, round(cfg.validation_size * base))
    unused = np.setdiff1d(all_rows, train_rows, assume_unique=True)
    # Validation from rows training never sees, so training keeps all N; but not when those rows hold one label
    # only (the rest of a split sorted by label: the first 13,000 of the Hub's imdb train leave 12,000 positive
    # reviews), where validation accuracy would pick the checkpoint that says that label most.
    one_label_left = label_column is not None and len(np.unique(label_column[unused])) == 1
    if len(unused) >= val_n and not one_label_left:
        val_rows = np.sort(rng.choice(unused, size=val_n, replace=False))
    else:
        if val_n >= base:
            raise ConfigError("validation_size", f"{val_n} validation rows leave no training rows out of {base}")
        perm = rng.permutation(train_rows)
        val_rows, train_rows = np.sort(perm[:val_n]), np.sort(perm[val_n:])

    name = Path(cfg.dataset).name
    train = to_examples(table, cfg.text_fields, cfg.label_field, f"{name}:{cfg.train_split}", train_rows)
    validation = to_examples(table, cfg.text_fields, cfg.label_field, f"{name}:validation", val_rows)
    if not is_file:
        test = load_eval_examples(cfg.dataset, cfg.eval_split, cfg.text_fields, cfg.label_field,
                                  cfg.max_eval_samples, cfg.dataset_config, missing_ok=True)
    return Splits(train, validation, test)


def load_test_split(cfg) -> Examples | None:
    """Only the test split: a single file still needs the full carve; a folder or Hub split does not."""
    if (resolve_local(cfg.dataset) or Path("")).is_file():
        return load_splits(cfg).test
    return load_eval_examples(cfg.dataset, cfg.eval_split, cfg.text_fields, cfg.label_field,
                              cfg.max_eval_samples, cfg.dataset_config, missing_ok=True)


def load_eval_examples(dataset: str, split: str = "test", text_fields: Sequence[str] = (), label_field: str = "label",
                       max_samples: int | None = None, dataset_config: str | None = None,
                       missing_ok: bool = False, by: str | None = None,
                       rows: tuple[int, int] | None = None, samples_per_class: int | None = None) -> Examples | None:
    """The first `max_samples` rows of a split, its rows a:b (`rows`), or a seeded sample of `samples_per_class`
    reviews per label: a fixed sample, comparable across runs; grouped by the column `by` (default: the table's
    own grouping column, if any; see `to_examples`)."""
    try:
        table = load_table(dataset, split, dataset_config)
    except ValueError as exc:
        if missing_ok and "no '" in str(exc):
            return None
        raise
    if rows is not None:
        picked, suffix = np.arange(rows[0], min(rows[1], len(table))), f"[{rows[0]}:{rows[1]}]"
    elif samples_per_class:
        if label_field not in table.column_names:
            raise ConfigError("label_field", f"column {label_field!r} is not in {dataset}")
        labels = map_labels(table[label_field])
        picked = per_label_sample(np.arange(len(labels)), labels, samples_per_class,
                                  np.random.default_rng(0))  # the same sample every time
        suffix = f"[{samples_per_class} per label]"
    else:
        picked = np.arange(min(len(table), max_samples) if max_samples else len(table))
        suffix = f"[:{max_samples}]" if max_samples and max_samples < len(table) else ""
    return to_examples(table, text_fields, label_field, f"{Path(dataset).name}:{split}{suffix}", picked, by=by)


# ---------------------------------------------------------------------------------------
class Encoder:
    """Token ids with head, tail or head+tail truncation and the model's own special tokens.

    head+tail keeps the opening and the verdict of a long review (Sun et al., 2019: "How to
    Fine-Tune BERT for Text Classification" found head 128 + tail 382 best on IMDB).
    """

    def __init__(self, tokenizer, max_length: int, truncation: str = "head_tail", head_fraction: float = 0.25):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = truncation
        self.head_fraction = head_fraction
        # Where the model's special tokens go, read off one encoded word (BERT: [CLS] x [SEP],
        # RoBERTa: <s> x </s>), so the same code serves every tokenizer.
        bare = tokenizer("sentiment", add_special_tokens=False)["input_ids"]
        full = tokenizer("sentiment", add_special_tokens=True)["input_ids"]
        start = next(i for i in range(len(full)) if full[i:i + len(bare)] == bare)
        self.prefix, self.suffix = full[:start], full[start + len(bare):]
        self.budget = max_length - len(self.prefix) - len(self.suffix)
        # A 1 MB review is cut to characters the budget can use before the tokenizer sees it.
        self.max_chars = max(self.budget * 24, 512)

    def _clip_chars(self, text: str, reach: int | None = None, truncation: str | None = None) -> str:
        """Keep the characters the kept tokens can come from: `reach` (default max_chars) from the start, the
        end, or both (head_tail, also what windows spanning a whole review need)."""
        reach = reach or self.max_chars
        truncation = truncation or self.truncation
        if truncation == "head":
            return text[:reach]
        if truncation == "tail":
            return text[-reach:]
        return text if len(text) <= 2 * reach else text[:reach] + " " + text[-reach:]

    def _truncate(self, ids: list[int]) -> list[int]:
        if len(ids) <= self.budget:
            return ids
        if self.truncation == "head":
            return ids[: self.budget]
        if self.truncation == "tail":
            return ids[len(ids) - self.budget:]
        head = int(self.budget * self.head_fraction)
        return ids[:head] + ids[len(ids) - (self.budget - head):]

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        clipped = [self._clip_chars(t) for t in texts]
        ids = self.tokenizer(clipped, add_special_tokens=False, truncation=False)["input_ids"]
        return [self.prefix + self._truncate(x) + self.suffix for x in ids]

    def windows(self, texts: Sequence[str], n: int) -> tuple[list[list[int]], np.ndarray]:
        """Up to `n` windows per text, spread evenly from its first token to its last.

        Returns the windows' token ids and, per window, the index of the text it came from. A text
        that fits the budget is one window; a longer one gets as many as it needs to be covered,
        at most `n` (two windows are its head and its tail, three add the middle, ...). Scoring
        them all and averaging reads more of a long review than one cut can, for up to n times
        the compute.
        """
        if n <= 1:
            return self(texts), np.arange(len(texts))
        # A 1 MB review keeps its start and end, n windows' worth of characters each.
        clipped = [self._clip_chars(t, self.max_chars * n, "head_tail") for t in texts]
        ids = self.tokenizer(clipped, add_special_tokens=False, truncation=False)["input_ids"]
        out: list[list[int]] = []
        owner: list[int] = []
        for i, x in enumerate(ids):
            count = min(n, -(-len(x) // self.budget)) if len(x) > self.budget else 1
            if count == 1:
                out.append(self.prefix + self._truncate(x) + self.suffix)
                owner.append(i)
                continue
            last = len(x) - self.budget
            for k in range(count):
                start = round(k * last / (count - 1))
                out.append(self.prefix + x[start:start + self.budget] + self.suffix)
                owner.append(i)
        return out, np.asarray(owner, dtype=np.int64)

    def cache_key(self, examples: Examples) -> str:
        payload = json.dumps([tokenizer_fingerprint(self.tokenizer), self.max_length, self.truncation,
                              self.head_fraction, examples.fingerprint()])
        return hashlib.sha256(payload.encode()).hexdigest()[:24]


def tokenizer_fingerprint(tokenizer) -> str:
    """Two tokenizers with the same vocabulary and rules tokenize alike, whatever folder they came from."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    spec = backend.to_str() if backend is not None else f"{type(tokenizer).__name__}:{tokenizer.name_or_path}"
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def tokenize_cached(examples: Examples, encoder: Encoder, cache_root: Path | None = None):
    """A `datasets.Dataset` of input_ids / label / length, reused from disk when the key matches."""
    import datasets

    cache_root = Path(cache_root or artifacts_root() / "cache" / "tokenized")
    target = cache_root / encoder.cache_key(examples)
    if (target / "dataset_info.json").exists():
        try:
            return datasets.load_from_disk(str(target)), True
        except Exception:  # a damaged cache entry is rebuilt, never fatal
            shutil.rmtree(target, ignore_errors=True)
    ids = encoder(examples.texts)
    ds = datasets.Dataset.from_dict({"input_ids": ids, "label": examples.labels.tolist(),
                                     "length": [len(x) for x in ids], "row": examples.rows.tolist()})
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=".tmp-"))
    try:
        ds.save_to_disk(str(tmp))
        tmp.rename(target)
    except OSError:  # another process wrote the same entry first: theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return ds, False


def _first_line(exc: BaseException) -> str:
    """The first line of the message that says what is wrong. `datasets` wraps a parser's error in a
    generic "An error occurred while generating the dataset"; the parser's own line (`EOF inside string
    starting at row 1`) is the one a user can act on."""
    while isinstance(exc.__cause__, BaseException) and str(exc).startswith(_GENERIC_ERRORS):
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


_GENERIC_ERRORS = ("An error occurred while generating the dataset",)


def _num(x: float) -> Any:
    return int(x) if float(x).is_integer() else x


# ---------------------------------------------------------------------------------------
# Uploaded files (the Train and Try pages): parsed with a clear message, saved for the worker.
def read_table_bytes(name: str, data: bytes):
    """A pandas DataFrame from an uploaded .csv / .parquet / .jsonl, or ValueError naming the problem."""
    import io

    import pandas as pd

    suffix = Path(name).suffix.lower()
    if not data or not data.strip():
        raise ValueError(f"file: {name} is empty")
    if suffix not in LOCAL_FORMATS:
        raise ValueError(f"file: {name} is not .csv, .parquet or .jsonl")
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            text = data.decode("utf-8-sig")
            frame = pd.read_csv(io.StringIO(text)) if suffix == ".csv" else pd.read_json(io.StringIO(text), lines=True)
    except UnicodeDecodeError:
        raise ValueError(f"file: {name} is not UTF-8 text (save it as UTF-8 and upload again)") from None
    except Exception as exc:
        raise ValueError(f"file: {name} is not a readable {suffix[1:]} table ({_first_line(exc)})") from None
    if frame.empty or len(frame.columns) == 0:
        raise ValueError(f"file: {name} has no rows")
    if not text_columns(frame):
        raise ValueError(f"file: {name} has no text column (columns: {', '.join(map(str, frame.columns))})")
    return frame


def check_training_table(frame, text_fields: Sequence[str], label_field: str, name: str) -> str:
    """Refuse, before anything is launched, an uploaded table the worker could not train on (no text column
    chosen, labels it cannot map); return a note on the rows it would skip as empty ("" when none)."""
    if not text_fields:
        raise ConfigError("text_fields", "choose at least one text column")
    if label_field in text_fields:
        raise ConfigError("label_field", f"{label_field!r} is also chosen as a text column")
    labels = map_labels(frame[label_field].tolist())
    if len(labels) and len(set(labels.tolist())) < 2:
        raise ConfigError("label_field", f"every row of {name} has the label {LABEL_NAMES[int(labels[0])]}: a classifier "
                         "needs both labels to learn")
    texts = review_texts([frame[name].tolist() for name in text_fields])
    return skipped_note([i for i, t in enumerate(texts) if not t], name)


def text_columns(frame) -> list[str]:
    """Columns holding text (pandas 3 reads them as `str`, older versions as `object`)."""
    import pandas as pd

    return [str(c) for c in frame.columns if pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object]


def save_upload(name: str, data: bytes) -> Path:
    """Keep an uploaded dataset under artifacts/uploads/, named by content, so runs can point at it."""
    digest = hashlib.sha256(data).hexdigest()[:12]
    folder = artifacts_root() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(name).stem).strip("-")[:40] or "upload"  # never a path from a name
    target = folder / f"{stem}-{digest}{Path(name).suffix.lower()}"
    if not target.exists():
        read_table_bytes(name, data)  # refuse what the worker could not read
        tmp = target.with_name(f".{target.name}.part")  # a full disk leaves no half file that looks saved
        try:
            tmp.write_bytes(data)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def preflight_dataset(dataset: str) -> None:
    """A local file or folder that exists, or a Hub name while the Hub can be reached or that `datasets` has
    cached (loaded once before: offline, `load_dataset` then reads its cache)."""
    if resolve_local(dataset) is None:
        if looks_like_path(dataset):
            raise ConfigError("dataset", f"no such file or folder: {dataset}")
        if not hub_reachable() and not dataset_cached(dataset):
            raise unreachable("dataset", dataset)
