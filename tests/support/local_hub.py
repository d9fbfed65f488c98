"""A Hugging Face cache laid out as the Hub leaves it after a first download, for the code paths a user with
network runs (`from_pretrained("FacebookAI/roberta-base")`, `load_dataset("imdb")`) to run here offline
(HF_HUB_OFFLINE=1): a model repository's snapshot in the Hub cache, and a dataset prepared in `datasets`' cache
under its Hub name, as `load_dataset` prepares one from the Hub's parquet files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

COMMIT = "0" * 40  # the snapshot's revision: any 40 hex digits


def lay_model(hub_cache: Path, repo_id: str, folder: str | Path) -> Path:
    """`folder`'s files as the snapshot of `repo_id` that refs/main points at."""
    repo = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def lay_dataset(datasets_cache: Path, name: str, config: str, splits: dict[str, pd.DataFrame], work: Path) -> Path:
    """`splits` prepared by `datasets`' parquet builder as the Hub dataset `name` (configuration `config`):
    <cache>/<name>/<config>/0.0.0/<commit>/, where an offline `load_dataset(name)` finds its latest copy."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    for split, frame in splits.items():
        frame.to_parquet(work / f"{split}.parquet")
    builder = Parquet(cache_dir=str(work / "build"), dataset_name=name.split("/")[-1], config_name=config,
                      data_files={split: str(work / f"{split}.parquet") for split in splits})
    builder.download_and_prepare()
    dest = Path(datasets_cache) / name.replace("/", "___") / config / "0.0.0" / COMMIT
    shutil.copytree(builder.cache_dir, dest)
    return dest
