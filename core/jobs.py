"""Background runs: launch, queue, stop, resume, reconcile, and the SQLite index.

    launch  -> run folder with status `queued`, then ensure a dispatcher is running
    dispatcher (one per machine, holds artifacts/queue.lock) -> starts queued runs in order,
               each as `python -m core _work RUN_ID` in its own session, output to log.txt
    worker  -> (core/worker.py) trains / runs the pipeline / searches, writes the run folder
    stop    -> STOP flag (the Trainer callback ends after the current step and checkpoints),
               then SIGTERM / SIGKILL to the worker's process group if it does not end in time
    backend -> (core/backends.py) `local` starts workers itself; `ray` sends each to a Ray cluster as a job, and
               Ray's view of a job answers where the folder cannot (a worker on another node)
    reconcile -> a run whose worker is gone becomes `interrupted`, never `running` forever

The folders are the truth. runs.db (SQLite, WAL) is an index rebuilt from them when missing or corrupt.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from .backends import (ClusterUnreachable, RayCluster, backend_name, max_concurrent, ray_verdict,
                       submitted)
from . import kinds
from .paths import PROJECT_ROOT, artifacts_root, runs_root
from .runs import (ACTIVE_STATES, TERMINAL_STATES, RunDir, children, iter_runs, new_run_id, now, read_json,
                   worker_alive, write_json_atomic)


# ---------------------------------------------------------------------------------------
# Index
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, kind TEXT, parent TEXT, name TEXT, model TEXT, dataset TEXT, state TEXT,
    created_at REAL, started_at REAL, ended_at REAL, step INTEGER, total_steps INTEGER,
    metrics TEXT, error TEXT, status_mtime REAL
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
"""
COLUMNS = ("id", "kind", "parent", "name", "model", "dataset", "state", "created_at", "started_at", "ended_at",
           "step", "total_steps", "metrics", "error", "status_mtime")


def db_path() -> Path:
    return artifacts_root() / "runs.db"


def _connect() -> sqlite3.Connection:
    path = db_path()
    for attempt in range(2):
        try:
            conn = sqlite3.connect(path, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            conn.execute("SELECT count(*) FROM runs").fetchone()
            return conn
        except sqlite3.DatabaseError:
            if attempt:
                raise
            # Corrupt index: the folders are the truth, so drop it and rebuild from them.
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _row_for(run: RunDir) -> dict[str, Any] | None:
    config = read_json(run.config_path)
    job = run.job()
    damaged = None
    if not isinstance(config, dict):
        if not run.config_path.exists() and not any(not p.name.startswith(".") for p in run.path.iterdir()):
            return None  # created a moment ago: config.json (via a .config.json.* temp file) comes first
        # config.json is written first and atomically, so this folder was damaged afterwards: list it, so it
        # can be seen and deleted, but never as a run that worked.
        config, damaged = {}, "config.json is missing or not valid JSON: a damaged run folder, left as it is"
    status = run.status()
    try:
        model, dataset = kinds.get(job["kind"]).describe(config)  # a pipeline's data: `source → target`
    except (ValueError, AttributeError, TypeError):  # a kind this process does not know, or a damaged config
        model = dataset = None
    try:
        mtime = run.status_path.stat().st_mtime
    except FileNotFoundError:
        mtime = 0.0
    return {"id": run.run_id, "kind": job["kind"], "parent": job["parent"],
            "name": config.get("name") or "", "model": model, "dataset": dataset,
            "state": "failed" if damaged else status.get("state") or "failed", "created_at": status.get("created_at"),
            "started_at": status.get("started_at"), "ended_at": status.get("ended_at"), "step": status.get("step"),
            "total_steps": status.get("total_steps"), "metrics": json.dumps(status.get("metrics") or {}),
            "error": damaged or (status.get("error") if status else "status.json is missing or unreadable (half-written folder)"),
            "status_mtime": mtime}


def sync_index() -> None:
    """Bring runs.db up to date with the folders: new, changed and deleted runs."""
    with closing(_connect()) as conn, conn:
        known = dict(conn.execute("SELECT id, status_mtime FROM runs").fetchall())
        seen = set()
        for run in iter_runs():
            seen.add(run.run_id)
            try:
                mtime = run.status_path.stat().st_mtime
            except FileNotFoundError:
                mtime = 0.0
            if known.get(run.run_id) == mtime:
                continue
            row = _row_for(run)
            if row is None:
                continue
            conn.execute(f"INSERT OR REPLACE INTO runs ({','.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})",
                         [row[c] for c in COLUMNS])
        gone = set(known) - seen
        conn.executemany("DELETE FROM runs WHERE id = ?", [(g,) for g in gone])


def list_runs(reconcile_first: bool = True) -> list[dict[str, Any]]:
    """Every run, newest first, a pipeline's stages right after it, with dead workers already reconciled. Cheap
    enough for every refresh of every tab: the index rereads only changed folders, and only the runs it lists as
    active are checked for a dead worker."""
    def indexed() -> list[dict[str, Any]]:
        sync_index()
        with closing(_connect()) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id DESC")]

    rows = indexed()
    if reconcile_first and reconcile([r["id"] for r in rows if r["state"] in ACTIVE_STATES]):
        rows = indexed()
    for r in rows:
        r["metrics"] = json.loads(r["metrics"] or "{}")
        r.pop("status_mtime", None)
    stages: dict[str, list] = {}
    for r in rows:
        if r.get("parent"):
            stages.setdefault(r["parent"], []).append(r)
    for r in rows:
        r["progress"] = _progress(r, stages.get(r["id"], []))
    ordered = []
    for r in rows:
        if not r.get("parent"):
            ordered.append(r)
            # stages in the order they ran, trials by number; those not started yet last
            ordered.extend(sorted(stages.pop(r["id"], []), key=lambda s: (s.get("started_at") or float("inf"), s["id"])))
    return ordered + [r for group in stages.values() for r in group]  # stages whose pipeline was deleted


def _progress(row: dict[str, Any], stages: list[dict[str, Any]]) -> float | None:
    """How far a run is, 0-1. A pipeline's step counts finished stages, so the running stage's own share is added:
    a pipeline an hour into its first stage of five reads more than 0%."""
    if not row.get("total_steps"):
        return None
    done = row["step"] or 0
    if row["state"] in ACTIVE_STATES and done < row["total_steps"]:
        running = [s for s in stages if s["state"] in ("running", "stopping") and s.get("total_steps")]
        done += min((running[-1]["step"] or 0) / running[-1]["total_steps"], 1.0) if running else 0.0
    return min(done / row["total_steps"], 1.0)


def reconcile(run_ids: list[str] | None = None) -> list[str]:
    """Mark runs whose worker died (kill -9, OOM, reboot, a Ray node or cluster lost) as interrupted, and runs Ray
    could not start as failed. Looks at every run, or only at `run_ids`. Returns the ids it changed."""
    fixed, requeued = [], False
    for run in iter_runs() if run_ids is None else [RunDir.for_id(i) for i in run_ids]:
        status = run.status()
        state = status.get("state")
        if state == "queued" and submitted(status):  # sent to Ray, its worker not started yet
            verdict = ray_verdict(status)
            if verdict and verdict[0] == "never started":  # e.g. Ray's start timeout while the cluster was full
                run.update_status(submitted_at=None, phase="queued again")
                run.log(f"{verdict[1]}; queued again")
                requeued = True
            elif verdict and verdict[0] == "ended":  # its worker never took the run: the node could not start it
                run.update_status(state="failed", error=verdict[1], ended_at=now())
                run.log(f"reconciled: {verdict[1]}")
                fixed.append(run.run_id)
            continue
        if state not in ("running", "stopping"):
            continue
        alive = worker_alive(status)
        reason = f"worker process {status.get('pid')} ended without finishing (killed, out of memory or reboot)"
        if alive is not True and status.get("ray_job"):  # on another node, or dead here: Ray says more
            verdict = ray_verdict(status)
            if verdict and verdict[0] != "alive":
                alive, reason = False, verdict[1]
        if alive is False:
            if state == "stopping":
                run.update_status(state="stopped", error=None, ended_at=now())
            else:
                run.update_status(state="interrupted", error=reason, ended_at=now())
            run.log(f"reconciled: {reason}")
            fixed.append(run.run_id)
    if requeued:
        ensure_dispatcher()
    if fixed:  # their workers are gone: the tracker gets their last lines from here
        from .tracking import mirror_ended

        mirror_ended([RunDir.for_id(i) for i in fixed])
    return fixed


# ---------------------------------------------------------------------------------------
# Launch and queue
def create_run(kind: str, config: Any, run_id: str | None = None) -> RunDir:
    """A queued run's folder, once its kind's checks pass (nothing is made when they do not)."""
    entry = kinds.get(kind)
    if check := kinds.load(entry.check):
        config = check(config)  # e.g. an evaluation's run id prefix becomes the id
    run = RunDir.for_id(run_id or new_run_id(config.name or kind))
    if run.path.exists():
        raise ValueError(f"run: {run.run_id} already exists")
    run.path.mkdir(parents=True)
    run.write_config(kind, config.to_dict())
    write_json_atomic(run.status_path, {"state": "queued", "created_at": now(), "queued_at": now(), "updated_at": now()})
    run.log(f"queued ({kind})")
    return run


def launch(kind: str, config: Any, run_id: str | None = None) -> RunDir:
    """Queue a run and make sure a dispatcher will start it; returns at once. With the ray backend, a cluster that
    does not answer, or has no node big enough for the run, is one line and nothing is queued."""
    if backend_name() == "ray":
        RayCluster.from_env().admit(kind, config.to_dict())
    run = create_run(kind, config, run_id)
    ensure_dispatcher()
    return run


def ensure_dispatcher() -> None:
    """Start a detached dispatcher; if one already holds the lock, the new one exits at once."""
    root = artifacts_root()
    with open(root / "dispatcher.log", "a") as out:
        subprocess.Popen([sys.executable, "-m", "core", "_dispatch"], cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                         env={**os.environ, "SENTIMENT_LAB_HOME": str(root)})


def send_queued() -> list[RunDir]:
    """Make sure a dispatcher starts (local) or sends (ray) the queued runs, as after a Ray cluster came back; a
    cluster that does not answer is said at once. Returns the queued runs not yet started or sent."""
    if backend_name() == "ray":
        RayCluster.from_env().nodes()
    ensure_dispatcher()
    return [r for r in queued_runs() if not submitted(r.status())]


def queued_runs() -> list[RunDir]:
    runs = [r for r in iter_runs() if r.status().get("state") == "queued"]  # stages are never queued themselves
    return sorted(runs, key=lambda r: (r.status().get("queued_at") or 0, r.run_id))


def holds_a_slot(run: RunDir) -> bool:
    """A process the dispatcher started that trains or scores: not a search (it only asks and tells), nor a
    pipeline's stage (it runs inside the pipeline's worker). A search's trials and source model do."""
    if not kinds.of(run).holds_slot:
        return False
    parent = kinds.parent_kind(run)
    return parent is None or parent.children_apart


def active_workers() -> list[RunDir]:
    return [r for r in iter_runs() if r.status().get("state") in ("running", "stopping") and holds_a_slot(r)
            and worker_alive(r.status())]


def dispatch_forever(poll: float = 0.5, give_up: float = 60.0) -> None:
    """Run the queue until every queued run is started (local) or sent to the cluster (ray). Only one dispatcher
    per artifacts folder holds the lock. With ray, a cluster that stays unreachable for `give_up` seconds leaves
    its runs queued, for the next launch, resume or `python -m core dispatch`, or for the local backend."""
    lock_path = artifacts_root() / "queue.lock"
    children: list[subprocess.Popen] = []
    ray = backend_name() == "ray"
    unreachable_since = None
    while True:
        with open(lock_path, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another dispatcher owns the queue; it re-checks before it leaves
            while True:
                children = [c for c in children if c.poll() is None]  # reap finished workers
                reconcile()
                queued = queued_runs()
                waiting = [r for r in queued if not submitted(r.status())]
                if not waiting:
                    break
                if not ray:
                    if len(active_workers()) < max_concurrent():
                        children.append(start_worker(waiting[0]))
                # One run of ours waiting in Ray's own queue at a time: Ray fails a job left pending for 15
                # minutes, and the runs behind it are better off here, where stop and the order are ours.
                elif not any(submitted(r.status()) for r in queued):
                    try:
                        RayCluster.from_env().submit(waiting[0])
                        unreachable_since = None
                    except ClusterUnreachable as exc:
                        if unreachable_since is None:
                            unreachable_since = time.time()
                            for r in waiting:
                                r.update_status(phase=f"not sent yet: {exc}")
                            waiting[0].log(f"not sent yet: {exc}")
                        if time.time() - unreachable_since > give_up:
                            break
                        time.sleep(5)
                    except ValueError as exc:  # refused by the cluster as it is now (a node gone, Ray missing)
                        waiting[0].update_status(state="failed", error=str(exc), ended_at=now())
                        waiting[0].log(f"error: {exc}")
                time.sleep(poll)
            fcntl.flock(lock, fcntl.LOCK_UN)
        # A launch that raced our exit queued its run after our last look but found the lock taken.
        if unreachable_since is not None or not any(not submitted(r.status()) for r in queued_runs()):
            return


def lower_priority(nice: int = 5) -> None:
    """A lower CPU priority keeps the app and the terminal responsive while training takes every core. Where the
    kernel groups processes by session (autogroup), a nice value only ranks processes within their session, and a
    worker has a session of its own: the session's group is lowered too."""
    os.nice(nice)
    try:
        Path("/proc/self/autogroup").write_text(str(nice))
    except OSError:  # no autogroup here (or not allowed): the nice value alone applies
        pass


def start_worker(run: RunDir) -> subprocess.Popen:
    # No pid until the new worker's: a resumed run still holds its dead worker's, and a reconcile in between
    # (the app, a search) would take the run for dead again.
    run.update_status(state="running", phase="starting", started_at=run.status().get("started_at") or now(),
                      worker_started_at=now(), pid=None, pgid=None)
    log = open(run.log_path, "a")
    env = {**os.environ, "SENTIMENT_LAB_HOME": str(artifacts_root()), "PYTHONUNBUFFERED": "1"}
    if "OMP_NUM_THREADS" not in os.environ and max_concurrent() > 1:
        # Runs side by side share the cores: each taking all of them, their threads wait on one another at every
        # step (docs/experiments.md, "The app under load").
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max_concurrent()))
    proc = subprocess.Popen([sys.executable, "-u", "-m", "core", "_work", run.run_id], cwd=PROJECT_ROOT,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lower_priority, env=env)
    log.close()
    run.update_status(pid=proc.pid, pgid=proc.pid, host=socket.gethostname())
    return proc


# ---------------------------------------------------------------------------------------
# Stop, cancel, resume, delete
def stop(run_id: str, timeout: float = 120.0, grace: float = 10.0) -> dict[str, Any]:
    """Cancel a queued run, or ask a running one to stop; escalate to signals if it ignores the flag."""
    run = RunDir.find(run_id)
    status = run.status()
    state = status.get("state")
    if state == "queued":
        if submitted(status):  # waiting in Ray's queue: its worker would find the run cancelled and do nothing
            try:
                RayCluster.from_env(status.get("ray_address")).stop_job(status["ray_job"])
            except ValueError:
                pass
        return run.update_status(state="cancelled", ended_at=now())
    if state not in ("running", "stopping"):
        raise ValueError(f"run: {run.run_id} is {state}, not running or queued")
    run.request_stop()
    for child in _active_children(run):
        child.request_stop()
    run.update_status(state="stopping")
    if kinds.of(run).stop_wait is not None:  # an evaluation has nothing to save between steps: signalled at once
        timeout = kinds.of(run).stop_wait
    deadline = time.time() + timeout
    while time.time() < deadline:
        if run.status().get("state") in TERMINAL_STATES or worker_alive(run.status()) is False:
            break
        time.sleep(0.5)
    else:
        _stop_job(run, grace)
        _signal_group(run.status(), signal.SIGTERM)
        end = time.time() + grace
        while time.time() < end and worker_alive(run.status()):
            time.sleep(0.5)
        if worker_alive(run.status()):
            _signal_group(run.status(), signal.SIGKILL)
            time.sleep(0.5)
    reconcile()
    return run.status()


def _stop_job(run: RunDir, grace: float) -> None:
    """A run on a Ray cluster: Ray signals its worker on whatever node it runs."""
    status = run.status()
    if not status.get("ray_job") or status.get("state") in TERMINAL_STATES:
        return
    try:
        RayCluster.from_env(status.get("ray_address")).stop_job(status["ray_job"])
    except ValueError:
        return  # unreachable: the signals below still reach a worker on this machine
    end = time.time() + grace
    while time.time() < end and run.status().get("state") not in TERMINAL_STATES:
        time.sleep(0.5)


def _active_children(run: RunDir) -> list[RunDir]:
    return [s for s in children(run) if s.status().get("state") in ("running", "stopping")]


def _signal_group(status: dict[str, Any], sig: int) -> None:
    pgid = status.get("pgid") or status.get("pid")
    if not pgid:
        return
    try:
        os.killpg(int(pgid), sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(int(status["pid"]), sig)
        except (ProcessLookupError, PermissionError, KeyError, TypeError):
            pass


def resume(run_id: str) -> RunDir:
    """Queue a stopped, interrupted or failed run again; it continues from its last checkpoint."""
    reconcile()
    run = RunDir.find(run_id)
    if not isinstance(read_json(run.config_path), dict):
        raise ValueError(f"run: {run.run_id} cannot resume: its config.json is missing or not valid JSON")
    if parent := kinds.parent_kind(run):
        raise ValueError(f"run: {run.run_id} is a {parent.child} of {parent.name} {run.job()['parent']}; "
                         f"resume the {parent.name}")
    state = run.status().get("state")
    if state in ("queued", "running") and kinds.of(run).resumes_itself:
        return run  # a search that lost a trial goes on by itself to its number of finished trials
    if state not in ("stopped", "interrupted", "failed"):
        raise ValueError(f"run: {run.run_id} is {state}; only stopped, interrupted or failed runs resume")
    if backend_name() == "ray":
        RayCluster.from_env().admit(run.job()["kind"], run.config())
    run.stop_flag.unlink(missing_ok=True)
    run.update_status(state="queued", resume=True, queued_at=now(), ended_at=None, error=None)
    run.log("resume requested")
    ensure_dispatcher()
    return run


def delete(run_id: str) -> None:
    import shutil

    run = RunDir.find(run_id)
    status = run.status()
    if parent := run.job()["parent"]:
        raise ValueError(f"run: {run.run_id} belongs to {parent}, whose results and resume need it; delete "
                         f"{parent} (its stages and trials go with it)")
    if status.get("state") in ("running", "stopping") and worker_alive(status) is not False:
        raise ValueError(f"run: {run.run_id} is {status['state']}; stop it first")
    targets = [run] + children(run)
    if needing := dependents({r.run_id for r in targets}):
        raise ValueError(f"run: {', '.join(needing)} still need the model of {run.run_id} (to start, resume or score "
                         "it); cancel or delete them first, or let them finish")
    entry = kinds.of(run)
    root = runs_root().resolve()
    for r in targets:  # a folder right under runs/, never a link out of it
        if r.path.is_symlink() or r.path.resolve().parent != root:
            raise ValueError(f"run: {r.run_id} is not a folder of {root}; nothing deleted")
    for r in targets:
        shutil.rmtree(r.path, ignore_errors=True)
    if on_delete := kinds.load(entry.on_delete):  # a search's study goes with it
        on_delete(run)
    sync_index()


def dependents(run_ids: set[str]) -> list[str]:
    """The other jobs that will still read one of these runs' models: a training run or pipeline started from it
    (`init_from`: a run id, or a folder inside the run) that is queued, running or could be resumed, and an
    evaluation of it not yet done."""
    def refers_to(ref: str) -> bool:
        if Path(ref).is_dir():  # a folder: this run's, or one inside it (its model/)
            path = Path(ref).resolve()
            return any(p.name in run_ids for p in (path, *path.parents))
        try:
            return RunDir.find(ref).run_id in run_ids
        except ValueError:  # no longer resolves: nothing this deletion changes
            return False

    found = []
    for row in list_runs(reconcile_first=False):
        if row["state"] in ("completed", "cancelled") or row.get("parent") or row["id"] in run_ids:
            continue
        config = read_json(RunDir.for_id(row["id"]).config_path, {}) or {}
        if any(refers_to(ref) for ref in kinds.get(row["kind"]).reads(config)):
            found.append(f"{row['id']} ({row['state']})")
    return found


def wait(run_id: str, timeout: float = 3600, poll: float = 1.0) -> dict[str, Any]:
    run = RunDir.find(run_id)
    deadline = time.time() + timeout
    while time.time() < deadline:
        reconcile()
        status = run.status()
        if status.get("state") in TERMINAL_STATES:
            return status
        time.sleep(poll)
    raise TimeoutError(f"run {run_id} still {run.status().get('state')} after {timeout}s")
