"""What the ray backend costs a run: the same runs launched through the local dispatcher and through a one-node Ray
cluster of its own (bench/ray_cluster.py), alternating, each timed from `launch` to `completed`. Prints one JSON
object (docs/experiments.md, "Runs through Ray").

    python bench/backend.py [--repeats 2] [--set max_train_samples=1000 ...]
"""

from __future__ import annotations

import argparse
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

from bench.common import cpu_model  # noqa: E402
from tests.support.ray_cluster import Cluster  # noqa: E402


def one_run(env: dict[str, str], sets: list[str]) -> dict[str, float]:
    args = [sys.executable, "-m", "core", "launch", "train", "--preset", "offline-quick", "--json"]
    for s in sets:
        args += ["--set", s]
    started = time.time()
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env}, check=True)
    run_dir = Path(json.loads(out.stdout)["run_dir"])
    launched = time.time()
    while True:
        status = json.loads((run_dir / "status.json").read_text())
        if status.get("state") in ("completed", "failed", "interrupted", "stopped"):
            break
        time.sleep(0.2)
    assert status["state"] == "completed", (run_dir / "log.txt").read_text()[-2000:]
    return {"launch_s": round(launched - started, 2), "to_worker_s": round(status["worker_started_at"] - started, 2),
            "training_s": status["elapsed_s"], "total_s": round(time.time() - started, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    args = ap.parse_args()
    sets = args.sets or ["max_train_samples=1000", "epochs=1"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {"SENTIMENT_LAB_HOME": f"{tmp}/lab", "SENTIMENT_LAB_TRACKING": "none", "SENTIMENT_LAB_OFFLINE": "1",
               # one CPU per run on Ray would starve torch of the second core: the whole node, as local has it
               "SENTIMENT_LAB_RAY_CPUS": str(os.cpu_count())}
        cluster = Cluster(Path(tmp), cpus=os.cpu_count()).start()
        try:
            runs = {"local": [], "ray": []}
            for _ in range(args.repeats):
                runs["local"].append(one_run({**env, "SENTIMENT_LAB_BACKEND": "local"}, sets))
                runs["ray"].append(one_run({**env, **cluster.env()}, sets))
        finally:
            cluster.stop()
    median = {b: {k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]} for b, rs in runs.items()}
    print(json.dumps({"cpu": cpu_model(), "cores": os.cpu_count(), "settings": ["--preset offline-quick", *sets],
                      "runs": runs, "median": median,
                      "ray_overhead_s": round(median["ray"]["total_s"] - median["local"]["total_s"], 2)}, indent=1))


if __name__ == "__main__":
    main()
