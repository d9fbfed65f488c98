"""Runs side by side: what each reached, and only the settings that differ (`python -m core compare`, the Runs
page)."""

from __future__ import annotations

import json
from typing import Any, Sequence

from .runs import RunDir, read_json


def flat_settings(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"source": {"learning_rate": 1e-4}}` -> `{"source.learning_rate": 1e-4}`; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{prefix}{key}."))
        elif key not in ("parent", "description"):
            out[f"{prefix}{key}"] = value
    return out


def compare(run_ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per run: state, best validation accuracy, test accuracy (a pipeline: each table row), training
    time and speed; then each setting that is not the same in every run. Returns (rows, those settings)."""
    runs = [RunDir.find(r) for r in run_ids]
    settings = {run.run_id: flat_settings(read_json(run.config_path, {}) or {}) for run in runs}
    # Only settings every run has: a pipeline's `source.epochs` and a single run's `epochs` do not line up.
    keys = sorted(set.intersection(*(set(s) for s in settings.values()))) if settings else []
    differ = [k for k in keys if len({json.dumps(s[k], sort_keys=True) for s in settings.values()}) > 1]
    rows = []
    for run in runs:
        status = run.status()
        metrics = status.get("metrics") or {}
        evals = [m["eval_accuracy"] for m in run.metrics() if isinstance(m.get("eval_accuracy"), (int, float))]
        row: dict[str, Any] = {"run": run.run_id, "state": status.get("state", "?"),
                               "best val accuracy": max(evals) if evals else metrics.get("val_accuracy")}
        if "test_accuracy" in metrics:
            row["test accuracy"] = metrics["test_accuracy"]
        for name, value in metrics.items():  # a pipeline's status carries its table's rows
            if name not in ("val_accuracy", "test_accuracy") and isinstance(value, (int, float)) and not name.startswith("test_"):
                row[name] = value
        row["train s"] = status.get("elapsed_s")
        row["samples/s"] = status.get("samples_per_s")
        row.update({k: _cell(settings[run.run_id][k]) for k in differ})
        rows.append(row)
    return rows, differ


def transposed(rows: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """`compare`'s rows turned to one line per figure or setting, one text cell per run (how a reader
    scans several runs: down the settings, across the runs)."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "run"))
    def text(v: Any) -> str:
        return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
    return [(key, [text(r.get(key)) for r in rows]) for key in keys]


def _cell(value: Any) -> Any:
    """A table cell: `title, content` for a list of fields, `none` for unset, the value otherwise."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "none" if value is None else value
