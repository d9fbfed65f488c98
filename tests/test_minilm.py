"""Integration with the real all-MiniLM-L6-v2 encoder (the PyPI wheel) on a few dozen rows."""

import pytest

from conftest import DATA, run_cli
from core.config import RunConfig
from core.predictor import Predictor
from core.runs import RunDir
from core.training import train_run

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (DATA / "amazon_reviews_multidomain").exists(),
                                                   reason="needs ../shared/data")]

UNSEEN = [  # other domains than Amazon products or films
    ("The waiter was rude and the soup arrived cold. Never again.", "negative"),
    ("Lovely hotel, spotless room and the staff could not have been kinder.", "positive"),
]


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory):
    import os

    os.environ["SENTIMENT_LAB_HOME"] = str(tmp_path_factory.mktemp("minilm-lab"))
    cfg = RunConfig(model="minilm-offline", dataset=str(DATA / "amazon_reviews_multidomain"), samples_per_class=40,
                    validation_size=16, max_eval_samples=48, max_length=64, epochs=3, batch_size=16,
                    learning_rate=3e-4, warmup_ratio=0.1, logging_steps=1, seed=1)
    run = RunDir.for_id("minilm-small")
    status = train_run(cfg, run)
    yield run, status
    os.environ.pop("SENTIMENT_LAB_HOME")


def test_minilm_trains_and_saves_safetensors(minilm_run):
    run, status = minilm_run
    assert status["state"] == "completed"
    assert status["metrics"]["test_n"] == 48 and status["metrics"]["test_accuracy"] >= 0.65  # 80 rows, 3 epochs, seeded
    assert (run.model_dir / "model.safetensors").exists() and not list(run.model_dir.glob("*.bin"))


def test_minilm_labels_reviews_from_other_domains(minilm_run):
    run, _ = minilm_run
    predictor = Predictor.from_run(str(run.path))
    results = predictor.predict([text for text, _ in UNSEEN])
    assert all(r["label"] in ("negative", "positive") and 0.5 <= r["probability"] <= 1.0 for r in results)
    # 80 training rows are too few to promise labels out of domain, but the ranking must be right.
    assert results[1]["p_positive"] > results[0]["p_positive"]


def test_minilm_zero_shot_on_imdb_from_the_command_line(minilm_run):
    run, _ = minilm_run
    import json
    import os

    out = run_cli("eval", "--run", str(run.path), "--data", str(DATA / "imdb"), "--max-samples", "24", "--json",
                  env={"SENTIMENT_LAB_HOME": os.environ["SENTIMENT_LAB_HOME"]})
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout)
    assert m["n"] == 24 and 0.0 <= m["accuracy"] <= 1.0
