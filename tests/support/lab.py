"""A lab of many finished runs, written as workers leave them: for the load bench and the tests of a big lab."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path


def build_lab(home: Path, runs: int = 300, long: int = 3, lines: int = 100_000, seed: int = 0) -> list[str]:
    """`runs` finished training runs written as a worker leaves them (config, run.json, status, metrics.jsonl),
    the first `long` of them with `lines` training log lines; returns their ids, the long ones first."""
    from core.config import load_preset
    from core.runs import RunDir, write_json_atomic

    rng = random.Random(seed)
    config = load_preset("offline-quick").source.to_dict()
    ids = []
    for i in range(runs):
        steps = lines if i < long else rng.randint(20, 400)
        run = RunDir(home / "runs" / f"20260101-{i:06d}-load-{i:06x}")
        run.path.mkdir(parents=True)
        write_json_atomic(run.config_path, {**config, "name": f"load {i}"})
        write_json_atomic(run.job_path, {"kind": "train", "parent": None, "stage": None})
        t0 = 1_767_225_600 + 3600 * i
        with open(run.metrics_path, "w") as fh:
            for step in range(1, steps + 1):
                fh.write(json.dumps({"loss": round(0.7 * math.exp(-step / max(steps / 3, 1)) + 0.05 * rng.random(), 4),
                                     "grad_norm": round(rng.uniform(0.5, 3), 3), "learning_rate": 2e-5 * (1 - step / steps),
                                     "epoch": round(step / steps, 4), "step": step, "time": t0 + step * 0.1}) + "\n")
                if step % max(steps // 10, 1) == 0:
                    fh.write(json.dumps({"eval_loss": 0.4, "eval_accuracy": round(0.8 + 0.1 * step / steps, 4),
                                         "epoch": round(step / steps, 4), "step": step, "time": t0 + step * 0.1}) + "\n")
        write_json_atomic(run.status_path, {
            "state": "completed", "created_at": t0, "queued_at": t0, "started_at": t0, "ended_at": t0 + steps * 0.1,
            "step": steps, "total_steps": steps, "epoch": 1.0, "elapsed_s": steps * 0.1, "samples_per_s": 160.0,
            "metrics": {"val_accuracy": 0.9, "test_accuracy": round(0.85 + 0.05 * rng.random(), 4)}})
        ids.append(run.run_id)
    return ids
