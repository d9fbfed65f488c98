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


def test_runtime_probe_says_what_it_needs_when_onnxruntime_is_missing():
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is not None:
        pytest.skip("onnxruntime is installed here: the probe would run")
    out = subprocess.run([sys.executable, "bench/runtime_probe.py", "--run", "any"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 2
    assert out.stderr.strip() == "error: this probe needs onnx and onnxruntime (pip install onnx onnxruntime)"


def test_soup_of_a_model_with_itself_is_that_model(tmp_path, reviews_dir, tiny_model):
    """bench/soup.py: each model, their ensemble (mean probability) and their soup (mean weights) on the same rows.
    Averaging a model with itself, either way, must give back exactly that model's accuracy."""
    pcfg = tiny_pipeline(tmp_path, reviews_dir, tiny_model)
    assert run_pipeline(pcfg, RunDir.for_id("p3"))["state"] == "completed"

    def soup(*runs: str) -> dict:
        cmd = [sys.executable, "bench/soup.py", "--runs", *runs, "--data", str(pcfg.target.dataset),
               "--rows", "0:40", "--max-length", "16", "--windows", "2"]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    same = soup("p3.source", str(RunDir.find("p3.source").model_dir))  # a run id and its model folder: one model
    alone = same["models"]["p3.source"]
    assert same["n"] == 40 and same["reading"] == "16 tokens x 2 windows"
    assert same["ensemble"] == same["soup"] == alone
    pair = soup("p3.source", "p3.target")
    assert set(pair["models"]) == {"p3.source", "p3.target"} and set(pair["ensembles"]) == {"0+1"}
    assert pair["models"]["p3.source"] == alone and 0 <= pair["soup"] <= 1


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


def test_end_weights_replay_core_mean_at_one_half():
    """bench/window_confidence.py --end-weights: W 0.5 is core's reading with both windows read, W 0 / 1 read only
    a two-window review's start / end, and a review that fits one window is that window whatever W is."""
    import importlib.util

    import numpy as np

    from core.evaluation import read_windows

    spec = importlib.util.spec_from_file_location("window_confidence", ROOT / "bench" / "window_confidence.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    rng = np.random.default_rng(0)
    windows_per_review = rng.integers(1, 3, size=200)  # 1 or 2 windows, in order start ... end
    owner = np.repeat(np.arange(200), windows_per_review)
    p_positive = rng.random(len(owner))
    labels = rng.integers(0, 2, size=200)
    rows = probe.end_weighted(p_positive, owner, labels, [0.0, 0.5, 1.0])
    assert [r["end_weight"] for r in rows] == [0.0, 0.5, 1.0]
    core_mean, _ = read_windows(owner, 200, lambda w: np.stack([1 - p_positive[w], p_positive[w]], 1), 1.0)
    assert rows[1]["accuracy"] == round(float((core_mean.argmax(1) == labels).mean()), 4)
    starts = np.r_[0, np.cumsum(windows_per_review)[:-1]]
    for row, picked in ((rows[0], starts), (rows[2], starts + windows_per_review - 1)):
        assert row["accuracy"] == round(float(((p_positive[picked] > 0.5) == labels).mean()), 4)
    # refused before the scoring pass: another window count has no single start and end to weigh
    out = subprocess.run([sys.executable, "bench/window_confidence.py", "--run", "any", "--windows", "3",
                          "--end-weights", "0.5"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--end-weights needs --windows 2" in out.stderr


def test_sam_step_applies_the_gradient_at_the_perturbed_weights_and_keeps_the_weights(tmp_path, tiny_model):
    """bench/source_sweep.py --sam: the optimiser gets the gradient at w + rho * g / |g|, the weights stay w."""
    import importlib.util

    import torch
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    spec = importlib.util.spec_from_file_location("source_sweep", ROOT / "bench" / "source_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, hidden_dropout_prob=0.0,
                                                               attention_probs_dropout_prob=0.0)
    inputs = {"input_ids": torch.tensor([[101, 2204, 3185, 102], [101, 6659, 3185, 102]]),
              "attention_mask": torch.ones(2, 4, dtype=torch.long), "labels": torch.tensor([1, 0])}
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[])
    trainer = sweep.sam_trainer(0.5)(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1  # the training loop sets it before each step
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def grads_at(weights: dict) -> dict:
        model.load_state_dict(weights, strict=False)
        model.zero_grad(set_to_none=True)
        model(**inputs).loss.backward()
        return {n: p.grad.detach().clone() for n, p in model.named_parameters()}

    g = grads_at(before)
    norm = torch.norm(torch.stack([v.norm(2) for v in g.values()]), 2)
    expected = grads_at({n: before[n] + g[n] * (0.5 / norm) for n in before})
    model.load_state_dict(before, strict=False)
    model.zero_grad(set_to_none=True)
    trainer.training_step(model, dict(inputs))
    for n, p in model.named_parameters():
        assert torch.allclose(p.detach(), before[n], rtol=0, atol=1e-7), n  # back where they were (w + e - e)
        assert torch.allclose(p.grad, expected[n], atol=1e-6), n
    assert not torch.allclose(expected["classifier.weight"], g["classifier.weight"])  # the perturbation mattered
