"""Training with a tiny random BERT: run folder contents, stop, resume."""

import threading
import time

import pytest

from conftest import tiny_config
from core.runs import RunDir, read_jsonl
from core.training import latest_checkpoint, train_run


def test_a_run_writes_its_folder_and_a_loadable_model(reviews_dir, tiny_model):
    run = RunDir.for_id("t-run")
    status = train_run(tiny_config(tiny_model, reviews_dir), run)
    assert status["state"] == "completed" and status["total_steps"] == 4
    assert 0.0 <= status["metrics"]["test_accuracy"] <= 1.0 and status["metrics"]["test_n"] == 16
    records = read_jsonl(run.metrics_path)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # every on_log, as it happened
    assert any("eval_accuracy" in r for r in records)
    assert {"config.json", "status.json", "metrics.jsonl", "log.txt", "model", "evals"} <= {p.name for p in run.path.iterdir()}
    assert (run.model_dir / "model.safetensors").exists()
    # log.txt tells a reader following it what happened: the first training line, the evaluation, the kept model.
    evaluation = next(r for r in records if "eval_accuracy" in r)
    log = run.log_path.read_text()
    assert "step 1/4 epoch 0.25: training loss" in log
    assert f"step 4/4 epoch 1.00: validation accuracy {evaluation['eval_accuracy']:.4f}" in log
    assert f"saved the model of checkpoint-4, the best validation accuracy ({evaluation['eval_accuracy']:.4f}), as model/" in log
    preds = next(iter(run.evals().values()))
    assert preds["n"] == 16 and (run.evals_dir / "reviews-test" / "predictions.csv").exists()

    from transformers import pipeline  # the saved folder works with plain transformers

    out = pipeline("text-classification", model=str(run.model_dir), device="cpu")("I loved it")
    assert out[0]["label"] in ("negative", "positive")
    # model/ is the best checkpoint's weights and a completed run is never resumed: its checkpoints are gone
    assert not run.checkpoints_dir.exists() and "removed checkpoints/" in log


def test_keep_checkpoints_keeps_them_after_the_run_completes(reviews_dir, tiny_model):
    run = RunDir.for_id("t-keep")
    assert train_run(tiny_config(tiny_model, reviews_dir, keep_checkpoints=True), run)["state"] == "completed"
    assert latest_checkpoint(run) is not None and (latest_checkpoint(run) / "optimizer.pt").exists()
    assert "removed checkpoints/" not in run.log_path.read_text()


def test_stop_checkpoints_and_resume_reaches_the_same_total(reviews_dir, tiny_model):
    cfg = tiny_config(tiny_model, reviews_dir, max_train_samples=40, batch_size=2, epochs=1)
    run = RunDir.for_id("t-stop")
    run.path.mkdir(parents=True)

    def stop_after_some_steps():
        while not any(r.get("step", 0) >= 5 for r in read_jsonl(run.metrics_path)):
            time.sleep(0.05)
        run.request_stop()

    t = threading.Thread(target=stop_after_some_steps, daemon=True)
    t.start()
    status = train_run(cfg, run)
    assert status["state"] == "stopped" and 5 <= status["step"] < 20
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and int(ckpt.name.split("-")[1]) == status["step"]
    assert not run.has_model()

    final = train_run(cfg, run, resume=True)
    assert final["state"] == "completed" and final["step"] == 20 and not run.checkpoints_dir.exists()
    steps = [r["step"] for r in read_jsonl(run.metrics_path) if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 20  # no step twice, none missing at the end
    assert set(range(1, 21)) == set(steps)


def test_a_failing_run_is_marked_failed_with_the_reason(reviews_dir, tiny_model):
    run = RunDir.for_id("t-fail")
    with pytest.raises(ValueError):
        train_run(tiny_config(tiny_model, reviews_dir, text_fields=["nope"]), run)
    status = run.status()
    assert status["state"] == "failed" and status["error"].startswith("text_fields: column 'nope'")


def test_training_on_one_label_is_refused_with_the_field_to_change(reviews_dir, tiny_model):
    """The Hub's imdb train split is sorted by label: its first 2,000 rows are all negative. Training on them
    would reach 100% validation accuracy and learn nothing, so the run fails and says why."""
    import pandas as pd

    frame = pd.read_parquet(reviews_dir / "train.parquet").sort_values("label", kind="stable")
    frame.to_parquet(reviews_dir / "train.parquet")  # 24 negative, then 24 positive
    run = RunDir.for_id("t-sorted")
    with pytest.raises(ValueError, match="max_train_samples: all 16 reviews in reviews:train are negative: a classifier "
                                         "needs both labels to learn; the split may be sorted by label: samples_per_class"):
        train_run(tiny_config(tiny_model, reviews_dir, max_train_samples=16, validation_size=8), run)
    assert run.status()["state"] == "failed"
    # The same file read by samples_per_class trains on both labels.
    balanced = train_run(tiny_config(tiny_model, reviews_dir, max_train_samples=None, samples_per_class=8,
                                     validation_size=8), RunDir.for_id("t-balanced"))
    assert balanced["state"] == "completed"


def test_windowed_scoring_averages_the_windows_and_travels_with_the_model(reviews_dir, tiny_model):
    import json

    import numpy as np
    import torch

    from core.config import INFERENCE_FILE
    from core.predictor import Predictor

    long = " ".join(["a dull start", "but a wonderful middle"] * 40 + ["and an awful end"] * 20)
    predictor = Predictor.from_folder(tiny_model, max_length=24, windows=3, precision="fp32")
    ids, owner = predictor.encoder.windows([long, "fine"], 3)
    assert owner.tolist() == [0, 0, 0, 1]
    with torch.inference_mode():
        each = [torch.softmax(predictor.model(input_ids=torch.tensor([x])).logits, -1)[0].numpy() for x in ids]
    probs = predictor.predict_proba([long, "fine"])
    assert np.allclose(probs[0], np.mean(each[:3], axis=0), atol=1e-5) and np.allclose(probs[1], each[3], atol=1e-5)

    run = RunDir.for_id("t-windows")
    status = train_run(tiny_config(tiny_model, reviews_dir, eval_windows=2), run)
    assert json.loads((run.model_dir / INFERENCE_FILE).read_text())["windows"] == 2
    assert next(iter(run.evals().values()))["windows"] == 2 and status["state"] == "completed"
    assert Predictor.from_run("t-windows").reading.windows == 2  # the Try page and `predict` score the same way


def test_reading_stops_at_the_first_window_that_makes_the_model_sure(tiny_model):
    import numpy as np
    import torch

    from core.predictor import Predictor

    long = " ".join(["a dull start", "but a wonderful middle"] * 40 + ["and an awful end"] * 20)
    texts = [long, "fine"]

    def read(confidence):
        return Predictor.from_folder(tiny_model, max_length=24, windows=3, confidence=confidence,
                                     precision="fp32").read(texts)

    predictor = Predictor.from_folder(tiny_model, max_length=24, windows=3, precision="fp32")
    ids, _ = predictor.encoder.windows(texts, 3)
    with torch.inference_mode():
        head, middle, tail, short = [torch.softmax(predictor.model(input_ids=torch.tensor([x])).logits, -1)[0].numpy()
                                     for x in ids]
    probs, reads = read(1.0)  # 1.0: every window, as before
    assert reads.tolist() == [3, 1] and np.allclose(probs[0], np.mean([head, middle, tail], axis=0), atol=1e-5)
    probs, reads = read(0.5)  # any first window is "sure" at 0.5: the end of the review alone
    assert reads.tolist() == [1, 1] and np.allclose(probs[0], tail, atol=1e-5) and np.allclose(probs[1], short, atol=1e-5)
    # Just above what the end alone gives, the start is read too (and the middle if still unsure).
    probs, reads = read(min(1.0, float(tail.max()) + 1e-6))
    order = [tail, head, middle][: reads[0]]
    assert reads[0] >= 2 and np.allclose(probs[0], np.mean(order, axis=0), atol=1e-5)
    assert Predictor.from_folder(tiny_model, max_length=24, windows=3, confidence=0.9).scoring == \
        "24 tokens x up to 3 windows, stop at p 0.9"


def test_reading_as_another_model_shares_the_weights_and_leaves_the_original_alone(tiny_model):
    import numpy as np

    from core.predictor import Predictor

    own = Predictor.from_folder(tiny_model, max_length=32, truncation="head")
    other = Predictor.from_folder(tiny_model, max_length=24, windows=3, confidence=0.9)
    borrowed = own.reading_as(other.reading)
    assert borrowed.model is own.model and borrowed.scoring == other.scoring == "24 tokens x up to 3 windows, stop at p 0.9"
    assert own.scoring == "32 tokens head" and own.reading.windows == 1  # the cached original is not mutated
    long = " ".join(["a dull start", "but a wonderful middle"] * 40)
    assert np.allclose(borrowed.predict_proba([long]), other.predict_proba([long]), atol=1e-6)
    with pytest.raises(ValueError, match="windows: must be between 1 and 32"):
        own.reading_as(windows=0)


def test_word_effects_are_what_leaving_each_word_out_changes(tiny_model):
    import pytest

    from core.predictor import Predictor

    predictor = Predictor.from_folder(tiny_model, max_length=32)
    text = "A slow start but a truly wonderful film"
    effects = predictor.word_effects(text)
    assert [w for w, _ in effects] == text.split()
    full = predictor.predict_proba([text])[0, 1]
    without_wonderful = predictor.predict_proba(["A slow start but a truly film"])[0, 1]
    assert effects[6][1] == pytest.approx(full - without_wonderful, abs=1e-6)
    assert any(abs(e) > 0 for _, e in effects)  # a random model still reacts to its input
    with pytest.raises(ValueError, match="review: has 201 words; word effects are measured for up to 200"):
        predictor.word_effects(" ".join(["word"] * 201))
    with pytest.raises(ValueError, match="review: is empty"):
        predictor.word_effects("   ")
