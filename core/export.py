"""A model others can use: its model card, a self-contained folder, and the Hugging Face Hub.

    python -m core export RUN --to DIR [--onnx]     safetensors, tokenizer, README.md (the card), sentiment_lab.json
    python -m core push RUN --repo USER/NAME        that folder, uploaded with huggingface_hub

The card is written into every finished model folder (and again on export, with the evaluations made since). It is
a Hugging Face model card: YAML front matter (base_model, datasets, license, metrics, model-index), then what the
model was trained on, how it reads a review, what it measured, and where it goes wrong.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .config import MODEL_PRESETS, Reading, RunConfig
from .paths import hub_reachable, resolve_local
from .runs import RunDir, read_json

# The base models' licenses, from their Hub cards.
LICENSES = {"FacebookAI/roberta-base": "mit", "FacebookAI/roberta-large": "mit",
            "distilbert/distilroberta-base": "apache-2.0", "microsoft/deberta-v3-base": "mit",
            "sentence-transformers/all-MiniLM-L6-v2": "apache-2.0"}
HUB_DATASETS = {"amazon_reviews_multidomain": "amazon_reviews_multidomain (Blitzer et al., 2007)",
                "imdb": "stanfordnlp/imdb", "amazon_polarity": "fancyzhx/amazon_polarity"}
ROLES = {"target_zero_shot": "zero-shot on the target", "source_after_target": "the source again, after the target "
         "(forgetting)", "transfer": "zero-shot on held-out target training rows (a search's objective)"}
VERIFY_REVIEWS = 100
ONNX_TOLERANCE = 1e-4


def lineage(run: RunDir) -> list[RunDir]:
    """This run and the runs its weights started from (init_from), oldest last."""
    chain, seen = [run], {run.run_id}
    while True:
        ref = (read_json(chain[-1].config_path, {}) or {}).get("init_from")
        if not ref:
            return chain
        try:
            parent = RunDir.find(ref) if not Path(ref).is_dir() else RunDir(Path(ref).resolve().parent)
        except ValueError:
            return chain
        if parent.run_id in seen or not parent.config_path.exists():
            return chain
        chain.append(parent)
        seen.add(parent.run_id)


def base_model(run: RunDir) -> str:
    """The pretrained model at the start of the lineage, as a Hub id where it has one."""
    name = (read_json(lineage(run)[-1].config_path, {}) or {}).get("model") or "unknown"
    name = MODEL_PRESETS.get(name, name)
    if name == "minilm-offline":
        return "sentence-transformers/all-MiniLM-L6-v2"
    return Path(name).name if resolve_local(name) is not None else name


def dataset_name(dataset: str) -> str:
    local = Path(dataset).name if resolve_local(dataset) is not None else dataset
    return HUB_DATASETS.get(local, local)


def card(run: RunDir) -> str:
    """The model card of a finished run's model."""
    import yaml

    from .evaluation import wrong_predictions

    cfg = RunConfig.from_dict(run.config())
    chain = lineage(run)
    base = base_model(run)
    datasets = list(dict.fromkeys(dataset_name(RunConfig.from_dict(r.config()).dataset) for r in reversed(chain)))
    evals = run.evals()
    own = next(((n, m) for n, m in evals.items() if n not in ROLES), None)
    saved = read_json(run.model_dir / "sentiment_lab.json", {}) or {}
    reading = Reading.load(run.model_dir)
    fitted = saved.get("calibration") or {}

    results = []
    for name, m in evals.items():
        dataset, _, split = str(m.get("dataset", name)).partition(":")
        results.append({"task": {"type": "text-classification", "name": "Sentiment analysis"},
                        "dataset": {"name": dataset_name(dataset), "type": dataset_name(dataset),
                                    "split": split or "test"},
                        "metrics": [{"type": "accuracy", "value": round(m["accuracy"], 4)},
                                    {"type": "f1", "value": round(m["f1"], 4), "name": "macro F1"}]})
    meta: dict[str, Any] = {"base_model": base, "datasets": datasets, "language": ["en"],
                            "library_name": "transformers", "pipeline_tag": "text-classification",
                            "tags": ["sentiment-analysis", "sentiment-transfer-lab"], "metrics": ["accuracy", "f1"],
                            "model-index": [{"name": run.run_id, "results": results}]}
    if base in LICENSES:
        meta["license"] = LICENSES[base]
    steps = " then ".join(f"{dataset_name(RunConfig.from_dict(r.config()).dataset)}" for r in reversed(chain))
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {run.run_id}", "",
             f"A binary sentiment classifier (negative / positive): `{base}` fine-tuned on {steps}, trained with the "
             "Sentiment Transfer Lab.", "", "## Training", "",
             f"- Runs: {', '.join(f'`{r.run_id}`' for r in reversed(chain))} (each fine-tuned from the one before)",
             f"- This run: {dataset_name(cfg.dataset)} ({cfg.train_split}), {cfg.epochs:g} epoch(s), learning rate "
             f"{cfg.learning_rate:g} ({cfg.scheduler}, warmup {cfg.warmup_ratio:g}), batch {cfg.batch_size}, "
             f"{cfg.max_length} tokens, seed {cfg.seed}",
             f"- Reads a review as: {reading.label()} ({reading.truncation}); `sentiment_lab.json` says so for the lab",
             "", "## Measured", "", "| data | what | accuracy | F1 | n | ECE (raw → calibrated) |", "|---|---|---|---|---|---|"]
    for name, m in evals.items():
        ece = f"{m.get('ece_uncalibrated', m.get('ece', 0)):.4f} → {m.get('ece', 0):.4f}" if "ece" in m else ""
        lines.append(f"| {m.get('dataset', name)} | {ROLES.get(name, 'its own test split')} | {m['accuracy']:.4f} | "
                     f"{m['f1']:.4f} | {m['n']} | {ece} |")
    if fitted:
        lines += ["", f"Probabilities are calibrated by a temperature of {fitted['temperature']:g}, fitted on "
                      f"{fitted['fitted_on']} ({fitted['n']} reviews; validation NLL {fitted['nll_before']:.4f} → "
                      f"{fitted['nll_after']:.4f}). The lab applies it; plain `transformers` gives the raw softmax, "
                      "with the same labels."]
    lines += ["", "## Limits", ""]
    outside = [(n, m) for n, m in evals.items() if n in ("target_zero_shot", "transfer")]
    for name, m in outside:
        lines.append(f"- Out of its training domain ({m['dataset']}): accuracy {m['accuracy']:.4f}.")
    if own and own[1].get("predictions") and Path(own[1]["predictions"]).exists():
        wrong = wrong_predictions(own[1]["predictions"]).head(3)
        if len(wrong):
            lines.append(f"- It is sometimes sure and wrong; the surest mistakes on {own[1]['dataset']}:")
            lines += [f"  - said {w.predicted} ({w.probability:.3f}), was {w.label}: \"{str(w.text)[:160]}\""
                      for w in wrong.itertuples()]
    lines.append("- English product and movie reviews only; two labels, no neutral.")
    lines += ["", "## Use", "", "```python", "from transformers import pipeline", "",
              'classify = pipeline("text-classification", model="PATH_OR_REPO")',
              'classify("A warm, funny film.")  # [{\'label\': \'positive\', \'score\': ...}]', "```", ""]
    return "\n".join(lines)


def write_card(run: RunDir) -> Path:
    path = run.model_dir / "README.md"
    path.write_text(card(run), encoding="utf-8")
    return path


def export(ref: str, to: str | Path, onnx: bool = False) -> dict[str, Any]:
    """A self-contained model folder: weights (safetensors), tokenizer, config, card, sentiment_lab.json; with
    `onnx`, model.onnx, checked against PyTorch on VERIFY_REVIEWS reviews."""
    run = RunDir.find(ref)
    source = run.require_model()
    dest = Path(to).expanduser()
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"--to: {dest} exists and is not empty; give a new folder")
    dest.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        if f.is_file() and f.suffix not in (".bin", ".pt", ".pth", ".pkl"):  # never pickles: safetensors only
            shutil.copy2(f, dest / f.name)
    (dest / "README.md").write_text(card(run), encoding="utf-8")
    out: dict[str, Any] = {"run_id": run.run_id, "to": str(dest), "files": sorted(p.name for p in dest.iterdir())}
    if onnx:
        out["onnx"] = export_onnx(run, dest)
        out["files"] = sorted(p.name for p in dest.iterdir())
    return out


def export_onnx(run: RunDir, dest: Path) -> dict[str, Any]:
    """model.onnx (logits from input_ids and attention_mask, any batch and length), then the largest difference
    from PyTorch's logits on up to VERIFY_REVIEWS reviews, read as the model reads them."""
    import warnings

    import numpy as np
    import onnxruntime as ort
    import torch

    from .data import Encoder
    from .modeling import load_model, load_tokenizer

    model = load_model(str(dest)).float().eval()
    tokenizer = load_tokenizer(str(dest))
    reading = Reading.load(dest)
    encoder = Encoder(tokenizer, reading.max_length, reading.truncation, reading.head_fraction)
    texts = verification_reviews(run)
    ids = encoder(texts)
    pad = tokenizer.pad_token_id or 0

    def batch(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            input_ids[i, :len(r)], mask[i, :len(r)] = r, 1
        return input_ids, mask

    example = batch(ids[:2])
    path = dest / "model.onnx"
    with warnings.catch_warnings():  # the tracer's notes on Python conditions; the check below is what counts
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(example[0]), torch.from_numpy(example[1])), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                                        "logits": {0: "batch"}}, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for i in range(0, len(ids), 16):
        input_ids, mask = batch(ids[i:i + 16])
        got = session.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0]
        with torch.inference_mode():
            want = model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
        worst = max(worst, float(np.abs(got - want).max()))
    if worst > ONNX_TOLERANCE:
        path.unlink()
        raise ValueError(f"--onnx: the ONNX graph's logits differ from PyTorch's by {worst:.2e} (more than "
                         f"{ONNX_TOLERANCE:g}); not exported")
    return {"file": path.name, "reviews_checked": len(ids), "max_abs_diff": worst}


def verification_reviews(run: RunDir) -> list[str]:
    """Up to VERIFY_REVIEWS reviews the model was scored on (its test predictions), else the bundled ones."""
    import pandas as pd

    for m in run.evals().values():
        if m.get("predictions") and Path(m["predictions"]).exists():
            texts = pd.read_csv(m["predictions"])["text"].dropna().astype(str).tolist()
            if texts:
                return (texts * VERIFY_REVIEWS)[:VERIFY_REVIEWS]
    texts = pd.read_csv(Path(__file__).with_name("other_sources.csv"))["text"].astype(str).tolist()
    return (texts * 2)[:VERIFY_REVIEWS]


def push(ref: str, repo: str, private: bool = False, staging: str | Path | None = None) -> str:
    """Export the run's model and upload it to the Hub as `repo`; returns the repo's URL. Says in one line what
    stops it: the Hub out of reach, no token, a repo name that is not USER/NAME."""
    import tempfile

    import huggingface_hub

    run = RunDir.find(ref)
    run.require_model()
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"--repo: {repo!r} is not USER/NAME (or ORG/NAME)")
    token = huggingface_hub.get_token()
    reachable = hub_reachable(max_age=60)
    if not reachable:
        raise ValueError("push: the Hugging Face Hub (huggingface.co) cannot be reached from this machine"
                         + ("" if token else ", and no token is set (HF_TOKEN, or `hf auth login`)"))
    if not token:
        raise ValueError("push: no Hugging Face token is set (HF_TOKEN, or `hf auth login`)")
    with tempfile.TemporaryDirectory(dir=staging) as tmp:
        folder = Path(tmp) / run.run_id
        export(run.run_id, folder)
        api = huggingface_hub.HfApi(token=token)
        url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                          commit_message=f"{run.run_id}, from the Sentiment Transfer Lab")
    return str(url)
