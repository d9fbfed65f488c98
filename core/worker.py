"""The worker: the process the queue starts for one run (`python -m core _work RUN_ID`). It runs the runner that the
run's kind has in core/kinds.py over its config.json (training, a pipeline, an evaluation, a curve, a search or one
of its trials), mirrored into MLflow while it runs; a training run of several processes goes under `accelerate
launch`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from . import kinds
from .config import RunConfig
from .paths import PROJECT_ROOT
from .runs import TERMINAL_STATES, RunDir, now
from .tracking import mirrored
from .training import train_run


def work(run_id: str) -> int:
    """The worker's body: run what config.json says, in this process (or under accelerate launch), mirrored
    into MLflow while it runs."""
    run = RunDir.for_id(run_id)
    if job := os.environ.get("SENTIMENT_LAB_RAY_JOB"):
        if not _claim(run, job):
            return 0
        threading.Thread(target=_watch_cluster, args=(run, job), daemon=True, name="ray-watch").start()
    config, kind = run.config(), run.job()["kind"]
    resume = bool(run.status().get("resume"))
    run.update_status(resume=False, worker_started_at=run.status().get("worker_started_at") or now())
    _install_sigterm(run)
    with mirrored(run):
        return _work(run, config, kind, resume)


def _claim(run: RunDir, job: str) -> bool:
    """A Ray job takes its run only if the run still waits for that job: not if it was cancelled meanwhile, or
    started by another backend, or queued again and sent as a newer job."""
    status = run.status()
    if status.get("state") != "queued" or status.get("ray_job") != job:
        print(f"{run.run_id} is {status.get('state')} (job {status.get('ray_job')}): nothing for job {job} to do")
        return False
    run.update_status(state="running", phase="starting", started_at=status.get("started_at") or now())
    run.mark_worker()
    return True


def _watch_cluster(run: RunDir, job: str, every: float = 5.0, patience: float = 60.0) -> None:
    """A Ray job's worker outlives its cluster when the head dies (Ray's own watcher goes with it): ended here as
    `interrupted` once the cluster forgets the job (restarted) or stays unreachable for `patience` seconds, so that
    no worker trains on for a cluster that will never report it, and `resume` starts from the last checkpoint."""
    from .backends import ClusterUnreachable, RayCluster

    cluster, lost_since = RayCluster.from_env(), None
    while True:
        time.sleep(every)
        try:
            info, lost_since = cluster.job(job), None
            if info is not None:
                continue
            reason = f"the Ray cluster at {cluster.address} no longer knows job {job} (the cluster was restarted)"
        except ClusterUnreachable as exc:
            lost_since = lost_since or time.time()
            if time.time() - lost_since < patience:
                continue
            reason = f"{exc} for {patience:.0f} s"
        if run.status().get("state") in TERMINAL_STATES:
            return
        run.update_status(state="interrupted", error=reason, ended_at=now())
        run.log(f"interrupted: {reason}")
        os._exit(75)


def _work(run: RunDir, config: dict[str, Any], kind: str, resume: bool) -> int:
    """The kind's runner (core/kinds.py) over its settings; a runner that returns an exit code passes it on."""
    try:
        entry = kinds.get(kind)
        code = kinds.load(entry.runner)(entry.make(config), run, resume)
        return code if isinstance(code, int) else 0
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def run_training(cfg: RunConfig, run: RunDir, resume: bool = False) -> dict[str, Any] | int:
    """The train kind's runner: in this process, or one process per device under `accelerate launch`."""
    if cfg.num_processes > 1 or cfg.num_machines > 1:
        return _work_distributed(run, cfg, resume)
    return train_run(cfg, run, resume=resume)


def _install_sigterm(run: RunDir) -> None:
    def handler(signum, frame):
        state = "stopped" if run.stop_requested() or run.status().get("state") == "stopping" else "interrupted"
        run.update_status(state=state, error=None if state == "stopped" else f"terminated by signal {signum}",
                          ended_at=now())
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


def accelerate_command(cfg: RunConfig, run_id: str, resume: bool) -> list[str]:
    from .modeling import resolve_precision

    precision = resolve_precision(cfg.precision).name
    mixed = {"fp32": "no"}.get(precision, precision)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.num_processes * cfg.num_machines),
           "--num_machines", str(cfg.num_machines), "--mixed_precision", mixed]
    if cfg.num_machines > 1:
        cmd += ["--main_process_ip", str(cfg.main_process_ip), "--machine_rank", os.environ.get("MACHINE_RANK", "0")]
    # torchrun under the hood; without CUDA the ranks talk over gloo (accelerate's --cpu would start one process).
    cmd += ["--multi_gpu"]
    cmd += ["-m", "core", "_train_rank", run_id] + (["--resume"] if resume else [])
    return cmd


def _work_distributed(run: RunDir, cfg: RunConfig, resume: bool) -> int:
    """`accelerate launch` one process per device; rank 0 alone writes the run folder."""
    cmd = accelerate_command(cfg, run.run_id, resume)
    run.log("distributed: " + " ".join(cmd[1:]))
    code = subprocess.call(cmd, cwd=PROJECT_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    state = run.status().get("state")
    if code != 0 and state not in TERMINAL_STATES:
        run.update_status(state="failed", error=f"distributed training exited with code {code}", ended_at=now())
    return code
