"""Calibration: ECE, Brier and the reliability bins as defined, a temperature that lowers validation NLL and never
changes a label, saved beside the model and used by every scoring path; ECE recomputed from predictions.csv."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import cli_here, tiny_config
from core.predictor import Predictor
from core.metrics import calibration, fit_temperature, nll, with_temperature
from core.runs import RunDir
from core.training import train_run


def test_ece_brier_and_bins_by_hand():
    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
    labels = np.array([1, 0, 0, 1])
    c = calibration(probs, labels)
    # confidences 0.9, 0.8, 0.6, 0.55 -> bins (13/15, 14/15], (11/15, 12/15], (8/15, 9/15], (8/15, 9/15]
    assert [(b["n"], b["accuracy"]) for b in c["reliability"]] == [(2, 1.0), (1, 0.0), (1, 1.0)]
    ece = (2 / 4) * abs(1.0 - 0.575) + (1 / 4) * abs(0.0 - 0.8) + (1 / 4) * abs(1.0 - 0.9)
    assert c["ece"] == pytest.approx(ece, abs=1e-5)
    assert c["brier"] == pytest.approx(np.mean((np.array([0.9, 0.8, 0.4, 0.55]) - labels) ** 2), abs=1e-5)


def test_a_temperature_lowers_nll_and_never_changes_a_label():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    right = rng.random(500) < 0.8
    p_said = np.where(right, labels, 1 - labels)
    sure = rng.uniform(0.9, 0.999, 500)  # over-confident: 80% right, 95% sure
    probs = np.stack([np.where(p_said == 0, sure, 1 - sure), np.where(p_said == 1, sure, 1 - sure)], axis=1)
    t = fit_temperature(probs, labels)
    assert t > 1.5  # softened
    scaled = with_temperature(probs, t)
    assert nll(scaled, labels) < nll(probs, labels)
    assert calibration(scaled, labels)["ece"] < calibration(probs, labels)["ece"]
    assert (scaled.argmax(1) == probs.argmax(1)).all()
    assert fit_temperature(probs, np.ones(500, dtype=int)) == 1.0  # one label: nothing to fit


def test_a_trained_model_is_calibrated_on_validation_and_its_ece_can_be_recomputed(reviews_dir, tiny_model):
    run = RunDir.for_id("20260101-000000-calib-aaaaaa")
    status = train_run(tiny_config(tiny_model, reviews_dir, epochs=3, batch_size=4), run)
    saved = json.loads((run.model_dir / "sentiment_lab.json").read_text())["calibration"]
    assert saved["fitted_on"].endswith(":validation") and saved["nll_after"] <= saved["nll_before"]
    assert status["metrics"]["temperature"] == saved["temperature"]

    metrics = next(iter(run.evals().values()))
    frame = pd.read_csv(metrics["predictions"])
    assert metrics["temperature"] == saved["temperature"]
    for column, key in (("p_positive", "ece"), ("p_positive_uncalibrated", "ece_uncalibrated")):
        if key not in metrics:  # a temperature of exactly 1: one ECE
            continue
        p = frame[column].to_numpy()
        probs = np.stack([1 - p, p], axis=1)
        labels = (frame["label"] == "positive").to_numpy().astype(int)
        # independently: 15 equal-width bins of the predicted label's probability
        conf, right = probs.max(1), probs.argmax(1) == labels
        edges = np.linspace(0, 1, 16)
        ece = sum(abs(right[m].mean() - conf[m].mean()) * m.mean()
                  for lo, hi in zip(edges[:-1], edges[1:]) if (m := (conf > lo) & (conf <= hi)).any())
        assert ece == pytest.approx(metrics[key], abs=1e-4)
    # the label is the uncalibrated argmax: the temperature changed none
    assert ((frame["p_positive_uncalibrated"] > 0.5) == (frame["predicted"] == "positive")).all()
    assert ((frame["p_positive"] > 0.5) == (frame["predicted"] == "positive")).all()

    predictor = Predictor.from_run(run.run_id)  # predict, the Try page and batches load the temperature
    assert predictor.temperature == saved["temperature"]
    out = cli_here("predict", "--run", run.run_id, "--json", "A wonderful film.")
    raw = predictor.read(["A wonderful film."])[0]
    assert json.loads(out.stdout)[0]["p_positive"] == pytest.approx(
        float(with_temperature(raw, saved["temperature"])[0, 1]), abs=1e-5)
