"""Experiment tracking: every run mirrored into MLflow, where a team keeps its experiments.

The run folder stays the truth; MLflow is a mirror of it, filled from the folder's files (config.json, metrics.jsonl,
status.json, evals/, results.md) and so rebuilt from them at any time: `python -m core mlflow-sync`. A worker
mirrors its run from a background thread every few seconds, so a tracking server that is slow or down never slows
or fails training (log.txt says so once). `mlflow.json` in the run folder records, per tracking URI, the MLflow run
and the last step mirrored of each metric, so that a resumed run logs into the same MLflow run with no step twice.

    store    MLFLOW_TRACKING_URI, or sqlite:///artifacts/mlflow.db (no server)
    switch   SENTIMENT_LAB_TRACKING=mlflow|none, else artifacts/lab.json's "tracking" (the app's sidebar)
    runs     one per lab run, named by its id; a pipeline's stages and a search's trials nested under it
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from .paths import PROJECT_ROOT, artifacts_root
from .runs import ACTIVE_STATES, RunDir, error_line, iter_runs, read_json, write_json_atomic
from .compare import flat_settings

EXPERIMENT = "sentiment-transfer-lab"
STATE_FILE = "mlflow.json"
SETTINGS_FILE = "lab.json"  # lab-wide switches the app's sidebar sets
EVERY_S = 5.0
# How each ending shows in MLflow (a stopped or interrupted run may still resume: it goes back to RUNNING).
MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "FAILED", "stopped": "KILLED",
                 "cancelled": "KILLED", "pruned": "KILLED"}
NOT_METRICS = {"step", "time"}


# ---------------------------------------------------------------------------------------
# The switch and the store
def tracking_on() -> bool:
    choice = os.environ.get("SENTIMENT_LAB_TRACKING") or (read_json(artifacts_root() / SETTINGS_FILE, {}) or {}).get(
        "tracking", "mlflow")
    return str(choice).strip().lower() not in ("none", "off", "0", "false", "no")


def set_tracking(on: bool) -> None:
    """The lab-wide switch (the sidebar's): workers started from now on read it."""
    path = artifacts_root() / SETTINGS_FILE
    write_json_atomic(path, {**(read_json(path, {}) or {}), "tracking": "mlflow" if on else "none"})


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{artifacts_root() / 'mlflow.db'}"


def ui_url() -> str:
    """Where the MLflow UI for this store answers: the server itself, or `make mlflow`'s address."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return os.environ.get("SENTIMENT_LAB_MLFLOW_UI", "http://127.0.0.1:5000")


def run_link(run: RunDir) -> str | None:
    """The MLflow UI's page of this run, once it has been mirrored into the current store."""
    entry = (read_json(run.path / STATE_FILE, {}) or {}).get(tracking_uri())
    if not entry or not entry.get("run_id"):
        return None
    return f"{ui_url()}/#/experiments/{entry['experiment_id']}/runs/{entry['run_id']}"


@lru_cache(maxsize=1)
def code_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


# ---------------------------------------------------------------------------------------
class Mirror:
    """Brings MLflow up to date with run folders. Every call is idempotent: what is already there is not sent again."""

    def __init__(self, uri: str | None = None):
        # An unreachable server must fail fast, not retry for minutes (the thread would only fall behind).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        import logging

        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its database set-up lines in every log.txt
        self.uri = uri or tracking_uri()
        with _store_lock(self.uri):
            self.client = MlflowClient(tracking_uri=self.uri)
            self._experiment()

    def _experiment(self):
        experiment = self.client.get_experiment_by_name(EXPERIMENT)  # a new local store is created (migrated) here
        if experiment is None:
            location = (artifacts_root() / "mlartifacts").as_uri() if self.uri.startswith("sqlite:") else None
            try:
                self.experiment_id = self.client.create_experiment(EXPERIMENT, artifact_location=location)
            except Exception:  # another worker created it a moment ago
                self.experiment_id = self.client.get_experiment_by_name(EXPERIMENT).experiment_id
        else:
            self.experiment_id = experiment.experiment_id

    # -- one run -----------------------------------------------------------------------------
    def sync(self, run: RunDir, final: bool = True) -> str | None:
        """Mirror one run folder, nested under its parent once that is mirrored. Returns its MLflow run id (None
        for a folder still being created)."""
        config = read_json(run.config_path)
        if not isinstance(config, dict):
            return None
        job, status = run.job(), run.status()
        # The parent's MLflow run as its own mirror recorded it (its worker, or mlflow-sync, mirrors it first):
        # never created from here, where a search's trials would race its worker to create it.
        parent_id = self.recorded(RunDir.for_id(job["parent"])) if job["parent"] else None
        states = read_json(run.path / STATE_FILE, {}) or {}
        entry = states.get(self.uri) or {}
        if job["parent"] and not parent_id and not entry and not final:
            return None  # its parent's worker mirrors the parent in a moment: then this one is created under it
        entry = self._open(run, job, status, config, entry)
        if parent_id and entry.get("parent") != parent_id:  # created before its parent was mirrored
            self.client.set_tag(entry["run_id"], "mlflow.parentRunId", parent_id)
            entry["parent"] = parent_id
        self._metrics(run, entry)
        state = status.get("state")
        if state in MLFLOW_STATUS and entry.get("final") != f"{state}@{status.get('ended_at')}":
            self._final(run, entry, status)
            self.client.set_terminated(entry["run_id"], MLFLOW_STATUS[state],
                                       end_time=int(float(status.get("ended_at") or time.time()) * 1000))
            entry["final"] = f"{state}@{status.get('ended_at')}"
        elif state in ACTIVE_STATES and entry.get("final"):  # resumed: running again, in the same MLflow run
            self.client.update_run(entry["run_id"], status="RUNNING")
            entry["final"] = None
        states[self.uri] = entry
        write_json_atomic(run.path / STATE_FILE, states)
        return entry["run_id"]

    def recorded(self, run: RunDir) -> str | None:
        return ((read_json(run.path / STATE_FILE, {}) or {}).get(self.uri) or {}).get("run_id")

    def _open(self, run: RunDir, job: dict, status: dict, config: dict, entry: dict) -> dict:
        """The run's MLflow run: the one recorded, else the one tagged with its id (mlflow.json lost), else new."""
        if entry.get("run_id"):
            try:
                self.client.get_run(entry["run_id"])
                return entry
            except Exception:  # deleted from the store, or another store under the same URI: mirror afresh
                entry = {}
        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.lab_run_id = '{run.run_id}'",
                                        max_results=1)
        if found:
            steps = {}
            for key in found[0].data.metrics:
                history = self.client.get_metric_history(found[0].info.run_id, key)
                steps[key] = max((m.step for m in history), default=-1)
            return {"run_id": found[0].info.run_id, "experiment_id": self.experiment_id, "steps": steps}
        from mlflow.entities import Param

        tags = {"lab_run_id": run.run_id, "kind": job["kind"], "mlflow.runName": run.run_id,
                "preset": _preset(run, config, job)}
        if commit := code_commit():
            tags.update({"commit": commit, "mlflow.source.git.commit": commit})
        if job.get("stage"):
            tags["stage"] = job["stage"]
        started = status.get("started_at") or status.get("created_at") or time.time()
        created = self.client.create_run(self.experiment_id, start_time=int(float(started) * 1000), tags=tags,
                                         run_name=run.run_id)
        params = [Param(k, _param_text(v)) for k, v in sorted(flat_settings(config).items())]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a call
            self.client.log_batch(created.info.run_id, params=params[i:i + 100])
        return {"run_id": created.info.run_id, "experiment_id": self.experiment_id, "steps": {}}

    def _metrics(self, run: RunDir, entry: dict) -> None:
        """Every metrics.jsonl record not yet mirrored, each value at its step. A resumed run rewinds its file to
        its checkpoint and logs those steps again: they are skipped, so no step is in MLflow twice."""
        from mlflow.entities import Metric

        steps: dict[str, int] = entry.setdefault("steps", {})
        batch = []
        for record in run.metrics():
            step = int(record.get("step", 0))
            stamp = int(float(record.get("time") or time.time()) * 1000)
            for key, value in record.items():
                if key in NOT_METRICS or not _number(value) or step <= steps.get(key, -1):
                    continue
                batch.append(Metric(key, float(value), stamp, step))
        for i in range(0, len(batch), 1000):  # MLflow takes at most 1,000 metrics a call
            part = batch[i:i + 1000]
            self.client.log_batch(entry["run_id"], metrics=part)
            for m in part:
                steps[m.key] = max(steps.get(m.key, -1), m.step)

    def _final(self, run: RunDir, entry: dict, status: dict) -> None:
        """At the end: the headline figures, each evaluation's accuracy and F1, and the files a reader wants."""
        from mlflow.entities import Metric

        step = int(status.get("step") or 0)
        stamp = int(float(status.get("ended_at") or time.time()) * 1000)
        figures = {k: v for k, v in (status.get("metrics") or {}).items() if _number(v)}
        for name, m in run.evals().items():
            figures.update({f"{name}.{k}": m[k] for k in ("accuracy", "f1") if _number(m.get(k))})
        if figures:
            self.client.log_batch(entry["run_id"], metrics=[Metric(k, float(v), stamp, step) for k, v in figures.items()])
        for path in [run.path / "results.md", run.path / "results.json",
                     *sorted(run.evals_dir.glob("*/metrics.json"))]:  # an evaluation's metrics hold its confusion
            if path.is_file():
                folder = str(path.parent.relative_to(run.path)) if path.parent != run.path else None
                self.client.log_artifact(entry["run_id"], str(path), artifact_path=folder)


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Workers that start together must not create (migrate) a new SQLite store at once: one waits for the other."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = Path(uri.removeprefix("sqlite:///")).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _preset(run: RunDir, config: dict, job: dict) -> str:
    """The preset or name a run came from: a pipeline's or search's own name, a stage's or trial's parent's."""
    if job["parent"]:
        parent = read_json(RunDir.for_id(job["parent"]).config_path, {}) or {}
        return str(parent.get("name") or "")
    return str(config.get("name") or "")


def _param_text(value: Any) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else "none" if value is None else str(value)
    return text[:6000]  # MLflow's limit on a param's value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


# ---------------------------------------------------------------------------------------
# In a worker: mirror while it works, without ever slowing it
@contextlib.contextmanager
def mirrored(run: RunDir, every: float | None = None) -> Iterator[None]:
    """Mirror `run` (and the folders beside it that this process writes: a pipeline's stages) every `every`
    seconds (SENTIMENT_LAB_MIRROR_EVERY, 5) from a daemon thread, and once more at the end. Off: does nothing."""
    every = every or float(os.environ.get("SENTIMENT_LAB_MIRROR_EVERY", EVERY_S))
    if not tracking_on():
        yield
        return
    done = threading.Event()
    warned: list[str] = []

    def tick(final: bool = False) -> None:
        try:
            mirror = getattr(tick, "mirror", None) or Mirror()
            tick.mirror = mirror  # type: ignore[attr-defined]
            for folder in [run, *_stages(run)]:
                mirror.sync(folder, final=final)
        except Exception as exc:  # a store down or busy: say it once, keep training, catch up later
            if not warned:
                warned.append(error_line(exc))
                run.log(f"warning: MLflow tracking at {tracking_uri()} failed ({error_line(exc)[:200]}); training "
                        "goes on, and `python -m core mlflow-sync` mirrors the run later")

    def loop() -> None:
        tick()  # at once: a search's trials are created under it only once it is there
        while not done.wait(every):
            tick()

    thread = threading.Thread(target=loop, daemon=True, name="mlflow-mirror")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=every + 30)
        last = threading.Thread(target=tick, args=(True,), daemon=True, name="mlflow-mirror-last")
        last.start()
        last.join(timeout=30)  # the run is over either way; a store that hangs does not hold the worker


def mirror_ended(runs: list[RunDir]) -> None:
    """Runs whose worker died (reconciled as interrupted or stopped) mirrored to their last line: no worker is
    left to send their tail. Off: does nothing; a store that fails is said in the run's log."""
    if not runs or not tracking_on():
        return
    try:
        mirror = Mirror()
        for run in runs:
            for folder in [run, *_stages(run)]:
                mirror.sync(folder, final=True)
    except Exception as exc:
        runs[0].log(f"warning: MLflow tracking at {tracking_uri()} failed ({error_line(exc)[:200]}); "
                    "`python -m core mlflow-sync` mirrors the run later")


def _stages(run: RunDir) -> list[RunDir]:
    """The folders this run's own process writes besides its own: a pipeline's or a curve's stages (a search's
    trials are separate workers that mirror themselves)."""
    from .runs import children

    from .kinds import of

    entry = of(run)
    return children(run) if entry.child and not entry.children_apart else []


# ---------------------------------------------------------------------------------------
def sync_all(uri: str | None = None) -> dict[str, Any]:
    """`mlflow-sync` (after a reconcile): every run folder brought into MLflow, missing or behind; runs with a live
    worker are left to it. Returns what it did."""
    from .runs import worker_alive

    mirror = Mirror(uri)
    synced, skipped, failed = [], [], {}
    for run in sorted(iter_runs(), key=lambda r: r.run_id):  # a parent before its stages and trials
        status = run.status()
        if status.get("state") in ("running", "stopping") and worker_alive(status):
            skipped.append(run.run_id)
            continue
        try:
            if mirror.sync(run):
                synced.append(run.run_id)
        except Exception as exc:
            failed[run.run_id] = error_line(exc)
    return {"uri": mirror.uri, "experiment_id": mirror.experiment_id, "synced": synced, "running": skipped,
            "failed": failed}


def ui_command(host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """`make mlflow`: the MLflow UI over the lab's store."""
    import sys

    root = artifacts_root()
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(),
            "--default-artifact-root", (root / "mlartifacts").as_uri(), "--host", host, "--port", str(port)]

