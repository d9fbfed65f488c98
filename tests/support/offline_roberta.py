"""A RoBERTa with random weights and a byte-level BPE tokenizer trained on the offline reviews: the default
model's architecture (its tokenizer's <s> ... </s>, positions that start at 2) where the Hub cannot be reached.

    python -m tests.support.offline_roberta OUT_FOLDER [--size base|tiny]

The tests build a tiny one; `bench/speed.py --gpu` a roberta-base-sized one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0-4, as roberta-base has them
SIZES = {  # roberta-base's shape, and one that trains in seconds on a CPU
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
}


def offline_texts(limit: int = 4000) -> list[str]:
    """Amazon and IMDB training reviews, half each: the text the tokenizer learns its merges from."""
    import pandas as pd

    amazon = pd.read_parquet(DATA / "amazon_reviews_multidomain" / "train.parquet")
    imdb = pd.read_parquet(DATA / "imdb" / "train.parquet")
    return (amazon["title"] + ". " + amazon["content"]).tolist()[: limit // 2] + imdb["text"].tolist()[: limit // 2]


def build(folder: str | Path, size: str = "tiny", vocab_size: int = 4000, texts: list[str] | None = None) -> str:
    """Train the tokenizer, draw the weights (seeded), save both as a model folder (safetensors); returns it."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts or offline_texts(), vocab_size=vocab_size, min_frequency=2,
                            special_tokens=SPECIALS, show_progress=False)
    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    tokenizer = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                     sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                                     mask_token="<mask>", model_max_length=512)
    config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=514, type_vocab_size=1,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=2, **SIZES[size])
    torch.manual_seed(0)
    RobertaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--size", choices=list(SIZES), default="tiny")
    ap.add_argument("--vocab-size", type=int, default=4000)
    a = ap.parse_args()
    print(build(a.folder, a.size, a.vocab_size))
    sys.exit(0)
