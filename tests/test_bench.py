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
