"""A model others can use: the card's YAML front matter, an exported folder that plain transformers loads in a fresh
process with the labels `predict` gives, an ONNX graph that matches PyTorch, and a push that says what stops it."""

import json
import subprocess
import sys

import pytest
import yaml

from conftest import cli_here, run_cli, tiny_config
from core.export import LICENSES, base_model
from core.runs import RunDir, write_json_atomic
from core.training import train_run

REVIEWS = ["A wonderful film, I loved it.", "Broke after one day, awful.", "Dull and slow.", "Excellent quality."]


@pytest.fixture
def trained(built_once, shared_reviews, tiny_model):
    def build():
        run = RunDir.for_id("20260101-000000-card-aaaaaa")
        train_run(tiny_config(tiny_model, shared_reviews, epochs=3, batch_size=4), run)
        return run.run_id

    return built_once("trained_for_export", build)


def front_matter(text):
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---", 2)[1])


def test_every_finished_model_has_a_card_in_the_hub_format(trained, reviews_dir):
    text = (trained.model_dir / "README.md").read_text()
    meta = front_matter(text)
    assert meta["pipeline_tag"] == "text-classification" and meta["language"] == ["en"]
    assert meta["base_model"] == "tiny-bert0" and meta["datasets"] == ["reviews"]
    assert meta["metrics"] == ["accuracy", "f1"]
    result = meta["model-index"][0]["results"][0]
    test = trained.status()["metrics"]
    assert result["dataset"]["split"] == "test"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"accuracy": round(test["test_accuracy"], 4),
                                                                   "f1": round(test["test_f1"], 4)}
    assert "## Measured" in text and "## Limits" in text and "temperature" in text


def test_the_base_model_and_its_license_come_from_the_start_of_the_lineage(lab_home):
    first, second = RunDir.for_id("20260101-000000-a-aaaaaa"), RunDir.for_id("20260101-000001-b-bbbbbb")
    write_json_atomic(first.config_path, {"model": "minilm-offline", "dataset": "amazon_polarity"})
    write_json_atomic(second.config_path, {"model": "minilm-offline", "dataset": "imdb", "init_from": first.run_id})
    assert base_model(second) == "sentence-transformers/all-MiniLM-L6-v2"
    assert LICENSES[base_model(second)] == "apache-2.0"


def test_an_exported_folder_loads_in_plain_transformers_with_the_labels_predict_gives(trained, tmp_path):
    out = cli_here("export", trained.run_id, "--to", str(tmp_path / "exported"), "--onnx", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert {"model.safetensors", "config.json", "README.md", "sentiment_lab.json", "model.onnx"} <= set(info["files"])
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in info["files"])
    assert info["onnx"]["reviews_checked"] == 100 and info["onnx"]["max_abs_diff"] <= 1e-4
    front_matter((tmp_path / "exported" / "README.md").read_text())

    code = ("import json, sys\nfrom transformers import pipeline\n"
            f"c = pipeline('text-classification', model={str(tmp_path / 'exported')!r})\n"
            f"print(json.dumps([r['label'] for r in c({REVIEWS!r})]))")
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    lab = json.loads(cli_here("predict", "--run", trained.run_id, "--json", *REVIEWS).stdout)
    assert json.loads(plain.stdout.strip().splitlines()[-1]) == [r["label"] for r in lab]

    again = cli_here("export", trained.run_id, "--to", str(tmp_path / "exported"))
    assert again.returncode == 2 and "exists and is not empty" in again.stderr and len(again.stderr.splitlines()) == 1


@pytest.mark.parametrize("env, says", [
    ({"HF_TOKEN": ""}, "push: the Hugging Face Hub (huggingface.co) cannot be reached from this machine, and no token"),
    ({"HF_TOKEN": "hf_not_a_real_token"}, "push: the Hugging Face Hub (huggingface.co) cannot be reached from this "
                                          "machine\n"),
])
def test_push_says_in_one_line_what_stops_it(trained, env, says):
    out = run_cli("push", trained.run_id, "--repo", "someone/sentiment", env=env)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and says in out.stderr + "\n"
    assert len(out.stderr.strip().splitlines()) == 1
    bad = cli_here("push", trained.run_id, "--repo", "no-slash")
    assert bad.returncode == 2 and "--repo: 'no-slash' is not USER/NAME" in bad.stderr
