"""The benchmark scripts run against real run folders (a tiny pipeline), so the README's commands keep working."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT, tiny_pipeline
from core.pipeline import run_pipeline
from core.runs import RunDir


def test_other_sources_scores_each_model_of_a_pipeline(tmp_path, reviews_dir, tiny_model):
    pytest.importorskip("sklearn")
    status = run_pipeline(tiny_pipeline(tmp_path, reviews_dir, tiny_model), RunDir.for_id("p2"))
    assert status["state"] == "completed"
    out = subprocess.run([sys.executable, "bench/other_sources.py", "--pipeline", "p2"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    reviews = pd.read_csv(ROOT / "core" / "other_sources.csv")
    assert result["n"] == len(reviews) == 60
    assert list(result["models"]) == ["source", "target", "baseline"]
    for stage, model in result["models"].items():
        assert model["run_id"] == f"p2.{stage}"
        assert set(model["by_source"]) == set(reviews["source"])
        # The reviews listed as wrong are exactly what the accuracy leaves out.
        assert len(model["wrong"]) == round((1 - model["accuracy"]) * 60)
        assert all(w["text"] in set(reviews["text"]) for w in model["wrong"])
    assert set(result["tfidf"]) == {"source", "target"}


def test_source_sweep_trains_a_variant_and_scores_held_out_target_rows(tmp_path, reviews_dir, tiny_model):
    """bench/source_sweep.py: the preset's source stage with this variant's settings, scored on target *train*
    rows (never the test split the pipeline's zero-shot row reads), with 1 and N windows."""
    pcfg = tiny_pipeline(tmp_path, reviews_dir, tiny_model)
    sets = [f"model={tiny_model}", f"dataset={reviews_dir}", "text_fields=title,content", "max_train_samples=32",
            "validation_size=8", "max_eval_samples=16", "max_length=32", "eval_max_length=32", "batch_size=8",
            "head_fraction=0.25", "learning_rate=1e-3", "seed=3",
            f"target.model={tiny_model}", f"target.dataset={pcfg.target.dataset}", "target.text_fields=text",
            "target.max_length=16", "target.eval_windows=1"]
    cmd = [sys.executable, "bench/source_sweep.py", "--preset", "offline-quick", "--rows", "30:40", "--windows", "3",
           "--home", str(tmp_path / "sweep")]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["state"] == "completed" and result["overrides"] == sets
    assert result["held_out"] == "target:train[30:40]" and result["n"] == 10
    assert {"held_out_w1", "held_out_w3"} <= set(result)
    assert all(0 <= result[k] <= 1 for k in ("held_out_w1", "held_out_w3", "source_test"))
    # the variant reached the run the sweep trained: its config.json has the seed and the source data
    config = json.loads((tmp_path / "sweep" / "runs" / "source" / "config.json").read_text())
    assert config["seed"] == 3 and config["dataset"] == str(reviews_dir) and config["epochs"] == 1.0


@pytest.mark.parametrize("bad, message", [("learning_rate=-1", "learning_rate: must be > 0"),
                                          ("epochs", "--set: expected FIELD=VALUE")])
def test_source_sweep_refuses_a_bad_setting_in_one_line(bad, message):
    out = subprocess.run([sys.executable, "bench/source_sweep.py", "--set", bad], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_window_confidence_replays_both_ways_of_averaging(tmp_path, reviews_dir, tiny_model):
    """bench/window_confidence.py: one scoring pass, every threshold replayed, windows combined by mean probability
    (core's rule) or mean log-odds. With one window per review the two are the same reading."""
    pcfg = tiny_pipeline(tmp_path, reviews_dir, tiny_model)
    assert run_pipeline(pcfg, RunDir.for_id("p4"))["state"] == "completed"

    def probe(windows: int, average: str) -> dict:
        cmd = [sys.executable, "bench/window_confidence.py", "--run", "p4.source", "--data", str(pcfg.target.dataset),
               "--split", "train", "--rows", "0:40", "--max-length", "8", "--windows", str(windows),
               "--confidences", "0.5,0.6", "--average", average]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    one = [probe(1, average)["rows"] for average in ("probability", "log-odds")]
    assert one[0] == one[1]
    for average in ("probability", "log-odds"):
        rows = probe(4, average)["rows"]
        assert [r["confidence"] for r in rows] == [1.0, 0.5, 0.6]
        assert rows[0]["tokens"] == 1.0 and rows[0]["windows_read"] > 1  # the reviews run past 8 tokens
        # p 0.5 is reached by the end window alone: one window a review, the fewest tokens
        assert rows[1]["windows_read"] == 1.0 and rows[1]["tokens"] <= rows[2]["tokens"] <= 1.0
