"""Precision and the scoring path: bf16 where the CPU has it, batches by length, the seed preset's RoBERTa path."""

import json

import numpy as np
import pytest

from conftest import DATA, ROOT, run_cli, tiny_config
from core.runs import RunDir

AMAZON, IMDB = str(DATA / "amazon_reviews_multidomain"), str(DATA / "imdb")


@pytest.fixture
def cpu_only():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("the CPU's rules")


def test_auto_precision_follows_the_cpus_bf16_instructions(monkeypatch, cpu_only):
    from core import modeling

    monkeypatch.setattr(modeling, "cpu_bf16_instructions", lambda: ["amx_bf16", "avx512_bf16"])
    chosen = modeling.resolve_precision("auto")
    assert chosen.name == "bf16" and "amx_bf16" in chosen.why and not chosen.warning
    assert modeling.resolve_precision("fp32").name == "fp32"

    monkeypatch.setattr(modeling, "cpu_bf16_instructions", lambda: [])
    chosen = modeling.resolve_precision("auto")
    assert chosen.name == "fp32" and "no bf16 instructions" in chosen.why
    asked = modeling.resolve_precision("bf16")  # accepted on any CPU, with a warning where it is emulated
    assert asked.name == "bf16" and "emulates" in asked.warning
    with pytest.raises(ValueError, match="^precision: fp16 needs a CUDA GPU"):
        modeling.resolve_precision("fp16")


def test_cpu_bf16_instructions_are_flags_of_this_cpu():
    from pathlib import Path

    from core.modeling import cpu_bf16_instructions

    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    assert set(cpu_bf16_instructions()) == {"amx_bf16", "avx512_bf16"} & set(flags)


def test_a_bf16_run_says_so_and_saves_fp32_weights(reviews_dir, tiny_model, cpu_only):
    from safetensors import safe_open

    from core.training import train_run

    run = RunDir.for_id("t-bf16")
    status = train_run(tiny_config(tiny_model, reviews_dir, precision="bf16"), run)
    assert status["state"] == "completed" and status["precision"] == "bf16" and status["precision_why"]
    assert "precision bf16 (" in run.log_path.read_text()
    with safe_open(str(run.model_dir / "model.safetensors"), "pt") as weights:
        assert {str(weights.get_tensor(k).dtype) for k in weights.keys()} == {"torch.float32"}
    assert next(iter(run.evals().values()))["precision"] == "bf16"  # the test split was scored in bf16 too


def test_bf16_scoring_agrees_with_fp32(tiny_model):
    import torch

    from core.predictor import Predictor

    texts = ["A wonderful film.", "Awful, do not buy.", "It was fine, I suppose, though the ending dragged on " * 5]
    fp32 = Predictor.from_folder(tiny_model, precision="fp32")
    bf16 = Predictor.from_folder(tiny_model, precision="bf16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert next(fp32.model.parameters()).dtype == torch.float32
    assert np.abs(fp32.predict_proba(texts) - bf16.predict_proba(texts)).max() < 0.02


def test_length_batches_keep_to_the_rows_and_the_token_budget():
    from core.predictor import length_batches

    lengths = np.random.default_rng(0).integers(3, 300, size=500).tolist() + [3000]
    batches = length_batches(lengths, max_rows=32, max_tokens=2048)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(lengths)))  # every row once
    assert [lengths[i] for i in seen] == sorted(lengths)  # shortest first: each batch pads to its own longest
    for b in batches:
        assert len(b) <= 32
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 2048
    assert [len(b) for b in batches if 3000 in [lengths[i] for i in b]] == [1]  # a row over the budget goes alone
    short = length_batches([8] * 100, max_rows=64, max_tokens=4096)
    assert [len(b) for b in short] == [64, 36]  # short rows: the row cap binds


def test_eval_refuses_fp16_on_a_cpu_in_one_line(reviews_dir, tiny_model, cpu_only):
    from core.training import train_run

    train_run(tiny_config(tiny_model, reviews_dir), RunDir.for_id("t-fp16"))
    out = run_cli("eval", "--run", "t-fp16", "--data", str(reviews_dir), "--precision", "fp16")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: precision: fp16 needs a CUDA GPU and this machine has none (use auto, bf16 or fp32)"


def test_the_seed_presets_path_on_a_tiny_roberta(tiny_roberta):
    """The default model's architecture through `python -m core pipeline --preset seed`: the preset's lengths
    (256 tokens of Amazon, 512 of IMDB, head+tail), precision and schedule; only the model, the data and their
    sizes are made small."""
    sets = [f"model={tiny_roberta}", f"dataset={AMAZON}", "max_train_samples=96", "validation_size=32",
            "max_eval_samples=40", "eval_steps=2", "logging_steps=1",
            f"target.model={tiny_roberta}", f"target.dataset={IMDB}", "target.max_train_samples=64", "target.validation_size=32",
            "target.max_eval_samples=40", "target.eval_steps=2", "target.logging_steps=1"]
    out = run_cli("pipeline", "--preset", "seed", "--run-id", "seed-rb", "--json",
                  *[a for s in sets for a in ("--set", s)], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["state"] == "completed" and len(result["rows"]) == 5 and {r["n"] for r in result["rows"]} == {40}
    table = json.loads((RunDir.for_id("seed-rb").path / "results.json").read_text())
    assert {r["name"]: r["scored_as"] for r in table["rows"]} == {
        "source": "256 tokens head_tail", "source_after_target": "256 tokens head_tail",
        "target_zero_shot": "512 tokens head_tail", "target_finetuned": "512 tokens head_tail",
        "target_only_baseline": "512 tokens head_tail"}
    target = RunDir.for_id("seed-rb.target")
    assert json.loads((target.model_dir / "config.json").read_text())["model_type"] == "roberta"
    assert "precision " in target.log_path.read_text()

    # 512-token reads happened: IMDB reviews longer than that were cut to exactly 512 ids, <s> ... </s>.
    from core.data import Encoder, load_eval_examples
    from core.modeling import load_tokenizer

    tokenizer = load_tokenizer(tiny_roberta)
    ids = Encoder(tokenizer, 512, "head_tail", 0.25)(load_eval_examples(IMDB, max_samples=40).texts)
    assert max(len(x) for x in ids) == 512
    assert all(x[0] == tokenizer.bos_token_id and x[-1] == tokenizer.eos_token_id for x in ids)

    scored = run_cli("eval", "--run", "seed-rb.target", "--data", IMDB, "--max-samples", "24", "--json")
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout)["n"] == 24 and json.loads(scored.stdout)["max_length"] == 512


def test_speed_bench_gpu_path_runs_on_a_cpu_with_a_tiny_roberta(tmp_path):
    """`bench/speed.py --gpu` is ready for a GPU: the same code, with a tiny model, runs here and says so."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "bench/speed.py", "--gpu", "--tiny", "--gpu-rows", "48", "--log-steps", "1",
                          "--home", str(tmp_path / "speed")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert "not GPU figures" in result["note"] or "gpu" in result["machine"]
    for stage, length in (("source", 256), ("target", 512)):
        seed, core = result[stage]["seed_style"], result[stage]["core"]
        assert seed["batch_size"] == 16 and core["max_length"] == length
        assert seed["real_tokens_per_s"] > 0 and core["real_tokens_per_s"] > 0 and 0 < core["mfu"] < 1
        assert seed["losses"] and core["losses"]  # the loss curves to compare
        assert result[stage]["speedup_real_tokens"] == round(core["real_tokens_per_s"] / seed["real_tokens_per_s"], 2)


def test_speed_bench_cpu_figures_come_with_their_baselines(tmp_path, tiny_model):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "bench/speed.py", "--model", tiny_model, "--rows", "40", "--train-rows", "32",
                          "--repeats", "3", "--home", str(tmp_path / "speed")], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["machine"]["cpu"] and result["machine"]["cores"] >= 1
    score = result["scoring"]
    assert {"core_eval", "core_eval_fp32", "pipeline_fp32", "pipeline_bf16_autocast"} <= set(score)
    assert score["speedup_vs_pipeline_fp32"] == round(
        score["core_eval"]["reviews_per_s"] / score["pipeline_fp32"]["reviews_per_s"], 2)
    # the same reviews and the same model: the pipeline and core mostly agree on the labels
    assert abs(score["core_eval_fp32"]["accuracy"] - score["pipeline_fp32"]["accuracy"]) <= 0.1
    assert result["training"]["trainer_defaults"]["batch_size"] == 8 and result["training"]["speedup"] > 0
    assert result["try"]["auto"]["answer"]["median_ms"] > 0 and result["try"]["auto"]["words"] == 50
