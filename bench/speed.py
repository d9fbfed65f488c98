"""How fast core scores, trains and answers the Try page, each figure beside its baseline measured in the same
run on the same reviews and model. Prints one JSON object (docs/experiments.md, "Speed", has what it measured).

    python bench/speed.py                  # CPU: MiniLM; Amazon training, IMDB test[:2000] scoring at 128 tokens
    python bench/speed.py --gpu            # GPU: roberta-base's shape, random weights, seed-style against core
    python bench/speed.py --gpu --tiny     # the same code on a CPU in a minute: a check, not a figure

CPU figures: core's training (precision auto, length-grouped batches) against a plain `Trainer` with
`TrainingArguments` defaults; `python -m core eval` against `transformers.pipeline` in fp32 and under bf16
autocast, at one window of the same length; the Try page's answer and word effects for one review.
GPU figures: real (non-pad) tokens/s and MFU (against a matrix product measured in the same run) of core's
training on the `seed` preset's settings against the seed's own `TrainingArguments` (fp16, batch 16, every
review padded to 512), on the offline Amazon (256 tokens for core) and IMDB (512) reviews.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
AMAZON, IMDB = str(DATA / "amazon_reviews_multidomain"), str(DATA / "imdb")
# A 50-word review for the Try figures: word effects score it 51 times, once whole and once per word left out.
TRY_REVIEW = ("I expected little from this film after the dull trailer, but the first hour surprised me: the leads have "
              "warmth, the dialogue is sharp, and the score never gets in the way. The last twenty "
              "minutes drag and the ending is rushed, yet I left the cinema smiling and happy.")


def machine() -> dict:
    import torch
    import transformers

    from core.modeling import cpu_bf16_instructions

    from bench.common import cpu_model

    info = {"cpu": cpu_model(), "cores": torch.get_num_threads(), "cpu_bf16": cpu_bf16_instructions(),
            "torch": torch.__version__, "transformers": transformers.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _quietly(fn, args):
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its summary: stdout stays one JSON object
        return fn(*args)


def fresh(fn, *args):
    """`fn(*args)` in a new Python process: no figure inherits another's warm caches, allocator settings or
    GPU memory."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_quietly, fn, args).result()


def rate(n: float, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def last_train_record(run) -> dict:
    from core.runs import read_jsonl

    return next(r for r in reversed(read_jsonl(run.metrics_path)) if "train_runtime" in r)


def losses(history: list[dict]) -> list[float]:
    return [round(r["loss"], 4) for r in history if "loss" in r and "eval_loss" not in r]


# -- CPU: training ---------------------------------------------------------------------------
def core_training(model: str, rows: int, length: int, precision: str) -> dict:
    """core's own path (`train_run`): the first `rows` Amazon reviews, one epoch, batches of 16 grouped by length."""
    from core.config import RunConfig
    from core.runs import RunDir
    from core.training import train_run

    cfg = RunConfig(model=model, dataset=AMAZON, text_fields=["title", "content"], max_train_samples=rows,
                    validation_size=32, max_eval_samples=16, max_length=length, epochs=1, batch_size=16,
                    learning_rate=5e-5, logging_steps=5, precision=precision)
    run = RunDir.for_id(f"speed-{precision}")
    status = train_run(cfg, run)
    record = last_train_record(run)
    return {"reviews_per_s": rate(rows, record["train_runtime"]), "seconds": round(record["train_runtime"], 1),
            "precision": status.get("precision"), "batch_size": 16, "group_by_length": True, "run": run.run_id}


def plain_trainer(model: str, rows: int, length: int) -> dict:
    """A plain `Trainer` with `TrainingArguments` defaults on the same reviews, model and length."""
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from core.data import review_texts
    from core.modeling import resolve_model

    ref = resolve_model(model)
    table = datasets.load_dataset("parquet", data_files=f"{AMAZON}/train.parquet", split="train").select(range(rows))
    tokenizer = AutoTokenizer.from_pretrained(ref)
    texts = review_texts([table["title"], table["content"]])
    ds = datasets.Dataset.from_dict({**tokenizer(texts, truncation=True, max_length=length), "label": table["label"]})
    with tempfile.TemporaryDirectory() as out:
        # defaults but for one epoch (the default is three): its speed settings are what is compared
        args = TrainingArguments(output_dir=out, report_to="none", disable_tqdm=True, num_train_epochs=1)
        trainer = Trainer(model=AutoModelForSequenceClassification.from_pretrained(ref, num_labels=2), args=args,
                          train_dataset=ds, processing_class=tokenizer)
        seconds = trainer.train().metrics["train_runtime"]
    return {"reviews_per_s": rate(rows, seconds), "seconds": round(seconds, 1), "precision": "fp32",
            "batch_size": args.per_device_train_batch_size}


# -- CPU: scoring ----------------------------------------------------------------------------
def core_eval(run_id: str, rows: int, length: int, precision: str) -> dict:
    """`python -m core eval`, one window of `length` tokens; its own `seconds` (scoring, tokenizing included)."""
    cmd = [sys.executable, "-m", "core", "eval", "--run", run_id, "--data", IMDB, "--max-samples", str(rows),
           "--max-length", str(length), "--windows", "1", "--precision", precision, "--json"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    m = json.loads(out.stdout)
    return {"reviews_per_s": rate(m["n"], m["seconds"]), "seconds": m["seconds"], "accuracy": m["accuracy"],
            "precision": precision}


def pipeline_scoring(model_dir: str, texts: list[str], labels, length: int, batch_size: int, bf16: bool) -> dict:
    """`transformers.pipeline("text-classification")` on the same reviews at the same length."""
    import numpy as np
    import torch
    from transformers import pipeline

    pipe = pipeline("text-classification", model=model_dir, device="cpu")
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with context:
        pipe(texts[:batch_size], truncation=True, max_length=length, batch_size=batch_size)  # warm-up
        t0 = time.perf_counter()
        out = pipe(texts, truncation=True, max_length=length, batch_size=batch_size)
        seconds = time.perf_counter() - t0
    predicted = np.array([1 if o["label"] == "positive" else 0 for o in out])
    return {"reviews_per_s": rate(len(texts), seconds), "seconds": round(seconds, 2),
            "accuracy": round(float((predicted == labels).mean()), 4), "batch_size": batch_size,
            "precision": "bf16 autocast" if bf16 else "fp32"}


def try_page(run_id: str, precision: str, repeats: int) -> dict:
    """What the Try page computes after the click, with the model already loaded: one answer, and word effects."""
    from core.predictor import Predictor

    predictor = Predictor.from_run(run_id, precision=precision)

    def timed(fn) -> dict:
        fn()  # warm-up
        ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - t0) * 1000)
        ms.sort()
        return {"median_ms": round(statistics.median(ms), 1), "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1)}

    return {"precision": predictor.precision.name, "words": len(TRY_REVIEW.split()),
            "answer": timed(lambda: predictor.predict([TRY_REVIEW])),
            "word_effects": timed(lambda: predictor.word_effects(TRY_REVIEW))}


def cpu_bench(args) -> dict:
    from core.data import load_eval_examples
    from core.runs import RunDir

    out: dict = {"machine": machine(), "model": args.model}
    train = {"rows": args.train_rows, "max_length": args.train_length,
             "core": fresh(core_training, args.model, args.train_rows, args.train_length, "auto"),
             "trainer_defaults": fresh(plain_trainer, args.model, args.train_rows, args.train_length)}
    train["speedup"] = round(train["core"]["reviews_per_s"] / train["trainer_defaults"]["reviews_per_s"], 2)
    out["training"] = train

    run_id = train["core"]["run"]
    examples = load_eval_examples(IMDB, "test", ["text"], max_samples=args.rows)
    model_dir = str(RunDir.for_id(run_id).model_dir)
    score = {"rows": args.rows, "max_length": args.length, "data": examples.source,
             "core_eval": core_eval(run_id, args.rows, args.length, "auto"),
             "core_eval_fp32": core_eval(run_id, args.rows, args.length, "fp32"),
             "pipeline_fp32": fresh(pipeline_scoring, model_dir, examples.texts, examples.labels, args.length, 32, False),
             "pipeline_bf16_autocast": fresh(pipeline_scoring, model_dir, examples.texts, examples.labels, args.length,
                                             32, True)}
    core_rate = score["core_eval"]["reviews_per_s"]
    score["speedup_vs_pipeline_fp32"] = round(core_rate / score["pipeline_fp32"]["reviews_per_s"], 2)
    score["speedup_vs_pipeline_bf16"] = round(core_rate / score["pipeline_bf16_autocast"]["reviews_per_s"], 2)
    out["scoring"] = score
    out["try"] = {"auto": fresh(try_page, run_id, "auto", args.repeats),
                  "fp32": fresh(try_page, run_id, "fp32", args.repeats)}
    return out


# -- GPU ---------------------------------------------------------------------------------------
def matmul_peak(device: str, n: int) -> float:
    """FLOP/s of an n x n matrix product on this device, the ceiling MFU is measured against: bf16's, or on a CPU
    without bf16 instructions (where bf16 is emulated, slower than fp32) the faster of bf16's and fp32's."""
    import torch

    if device == "cuda":
        return _matmul_flops(device, n, torch.bfloat16)
    return max(_matmul_flops(device, n, torch.bfloat16), _matmul_flops(device, n, torch.float32))


def _matmul_flops(device: str, n: int, dtype) -> float:
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    reps = 20 if device == "cuda" else 3
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def flops_per_token(model_dir: str, seq: float) -> float:
    """Training FLOPs per token: 6 per weight outside the embeddings, and attention's 12 x layers x width x length."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_dir)
    d, layers = c.hidden_size, c.num_hidden_layers
    weights = layers * (4 * d * d + 2 * d * c.intermediate_size) + d * d + 2 * d  # encoder, pooler dense, head
    return 6 * weights + 12 * layers * d * seq


def seed_style(model_dir: str, texts: list[str], labels: list[int], cuda: bool, steps_log: int) -> dict:
    """The seed's own TrainingArguments: fp16, batch 16, lr 2e-5, every review padded to 512 tokens."""
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer(texts, truncation=True, max_length=512, padding="max_length")
    real = sum(sum(m) for m in enc["attention_mask"])
    ds = datasets.Dataset.from_dict({**enc, "label": labels})
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, report_to="none", disable_tqdm=True, fp16=cuda, use_cpu=not cuda,
                                 per_device_train_batch_size=16, learning_rate=2e-5, warmup_steps=0.06,
                                 num_train_epochs=1, logging_steps=steps_log, save_strategy="no", seed=42)
        trainer = Trainer(model=AutoModelForSequenceClassification.from_pretrained(model_dir), args=args,
                          train_dataset=ds, processing_class=tokenizer)
        seconds = trainer.train().metrics["train_runtime"]
        history = trainer.state.log_history
    return {"precision": "fp16" if cuda else "fp32 (fp16 needs a GPU)", "batch_size": 16, "seconds": round(seconds, 1),
            "real_tokens": real, "real_tokens_per_s": rate(real, seconds), "mean_length": real / len(texts),
            "losses": losses(history)}


def core_stage(model_dir: str, stage: str, rows: int, cuda: bool, steps_log: int) -> dict:
    """core's training on the seed preset's stage settings, with this machine's batch and compile choices."""
    import numpy as np

    from core.config import load_preset
    from core.data import Encoder, load_splits, tokenize_cached
    from core.modeling import load_tokenizer
    from core.runs import RunDir
    from core.training import train_run

    seed = load_preset("seed")
    base = seed.source if stage == "source" else seed.target
    batch = 64 if cuda else 16
    cfg = base.replace(model=model_dir, dataset=AMAZON if stage == "source" else IMDB, max_train_samples=rows,
                       validation_size=64, max_eval_samples=64, eval_steps=None, early_stopping_patience=0,
                       batch_size=batch, learning_rate=base.learning_rate * (batch / base.batch_size) ** 0.5,
                       logging_steps=steps_log, torch_compile=cuda)
    run = RunDir.for_id(f"speed-gpu-{stage}")
    status = train_run(cfg, run)
    ds, _ = tokenize_cached(load_splits(cfg).train,
                            Encoder(load_tokenizer(model_dir), cfg.max_length, cfg.truncation, cfg.head_fraction))
    real = int(np.sum(ds["length"]))
    from core.runs import read_jsonl

    history = read_jsonl(run.metrics_path)
    seconds = last_train_record(run)["train_runtime"]
    return {"precision": status.get("precision"), "batch_size": batch, "learning_rate": cfg.learning_rate,
            "max_length": cfg.max_length, "torch_compile": cfg.torch_compile, "seconds": round(seconds, 1),
            "real_tokens": real, "real_tokens_per_s": rate(real, seconds), "mean_length": real / len(ds),
            "losses": losses(history)}


def gpu_bench(args) -> dict:
    import torch

    from tests.support.offline_roberta import build
    from core.data import load_eval_examples

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    peak = matmul_peak(device, 8192 if cuda else 1024)
    out: dict = {"machine": machine(), "size": "tiny" if args.tiny else "base", "peak_bf16_flops": round(peak / 1e12, 2),
                 "note": "" if cuda else "no GPU: this checks the code path; its figures are not GPU figures"}
    folder = build(Path(tempfile.mkdtemp()) / "roberta", "tiny" if args.tiny else "base", 32000 if not args.tiny else 4000)
    for stage, data in (("source", AMAZON), ("target", IMDB)):
        examples = load_eval_examples(data, "train", ["title", "content"] if stage == "source" else ["text"],
                                      max_samples=args.gpu_rows)
        seed = fresh(seed_style, folder, examples.texts, examples.labels.tolist(), cuda, args.log_steps)
        core = fresh(core_stage, folder, stage, args.gpu_rows, cuda, args.log_steps)
        for r in (seed, core):
            r["mfu"] = round(r["real_tokens_per_s"] * flops_per_token(folder, r.pop("mean_length")) / peak, 4)
        out[stage] = {"rows": args.gpu_rows, "seed_style": seed, "core": core,
                      "speedup_real_tokens": round(core["real_tokens_per_s"] / seed["real_tokens_per_s"], 2)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm-offline", help="CPU figures: the model trained and scored")
    ap.add_argument("--rows", type=int, default=2000, help="IMDB test rows scored")
    ap.add_argument("--length", type=int, default=128, help="tokens a review is read by when scored")
    ap.add_argument("--train-rows", type=int, default=512, help="Amazon training reviews for the training figures")
    ap.add_argument("--train-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=30, help="Try figures: clicks timed")
    ap.add_argument("--gpu", action="store_true", help="the GPU figures instead (roberta-base shape)")
    ap.add_argument("--tiny", action="store_true", help="with --gpu: a tiny RoBERTa, to check the code on a CPU")
    ap.add_argument("--gpu-rows", type=int, default=4000, help="with --gpu: training reviews per stage")
    ap.add_argument("--log-steps", type=int, default=10, help="with --gpu: a loss every N steps")
    ap.add_argument("--home", help="lab home for the runs it trains (default: a temporary folder)")
    args = ap.parse_args()

    home = args.home or tempfile.mkdtemp(prefix="speed-")
    os.environ["SENTIMENT_LAB_HOME"] = home
    os.environ.setdefault("SENTIMENT_LAB_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    t0 = time.time()
    result = _quietly(gpu_bench if args.gpu else cpu_bench, (args,))
    result["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
