"""Run folders: the one source of truth for a run. The worker writes them, everyone else reads.

    artifacts/runs/<run_id>/
        config.json      the settings alone: RunConfig (PipelineConfig for a pipeline, EvalConfig for an evaluation)
        run.json         what the folder is: kind (train, pipeline, eval), and a stage's parent and stage name
        status.json      state, progress, pid/host, error   (rewritten atomically)
        metrics.jsonl    one Trainer log entry per line      (appended as it happens)
        evals/<name>/    metrics.json + predictions.csv per evaluation
        checkpoints/     Trainer checkpoints (best + last), for resume; removed once the run completes
        model/           final model: safetensors + tokenizer, loadable by transformers.pipeline
        log.txt          the worker's stdout and stderr
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import ConfigError
from .paths import runs_root
from .terminal import Terminal

# Active states: a worker owns the run. Terminal states: nobody does.
ACTIVE_STATES = ("queued", "running", "stopping")
TERMINAL_STATES = ("stopped", "completed", "failed", "interrupted", "cancelled", "pruned")  # pruned: a search trial
STATES = ACTIVE_STATES + TERMINAL_STATES
STAGES = ("source", "target", "baseline")  # a pipeline's training stages, each a run folder <pipeline id>.<stage>
JOB_KEYS = ("kind", "parent", "stage")  # run.json's; folders written before it kept them in config.json
# run.json of a search's trial also has `trial` and `trial_id`: its number and id in the search's Optuna study


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def now() -> float:
    return round(time.time(), 3)


def new_run_id(prefix: str = "run") -> str:
    """Sortable by creation time and unique across processes launched in the same second."""
    slug = re.sub(r"[^a-z0-9]+", "-", prefix.lower()).strip("-")[:24] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(3)}"


# ---------------------------------------------------------------------------------------
def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, default: Any = None) -> Any:
    """A missing, empty or corrupt file reads as `default`, never as an exception in a reader."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError):
        return default


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line; a half-written last line (the writer is mid-append) is skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return _records(text.splitlines())


class MetricsTail:
    """metrics.jsonl files as frames, each read once and then only for the lines appended since the last read: a
    100,000-line log costs its new lines per refresh, not half a second. Shared by every caller in the process
    (the app's sessions and fragments); the frames returned are shared too, so callers copy before changing one."""

    _files: "dict[str, tuple[int, int, Any]]" = {}  # path -> (inode, bytes consumed, frame)
    _lock = threading.Lock()
    keep = 64  # files held; the least recently read is dropped first

    @classmethod
    def frame(cls, path: Path):
        import pandas as pd

        key = str(path)
        try:
            stat = os.stat(key)
        except FileNotFoundError:
            with cls._lock:
                cls._files.pop(key, None)
            return pd.DataFrame()
        with cls._lock:
            inode, offset, frame = cls._files.pop(key, (stat.st_ino, 0, pd.DataFrame()))
            if inode != stat.st_ino or stat.st_size < offset:  # replaced or cut short: read it again from the start
                inode, offset, frame = stat.st_ino, 0, pd.DataFrame()
            if stat.st_size > offset:
                with open(key, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read(stat.st_size - offset)
                complete = data[:data.rfind(b"\n") + 1]  # a line still being written waits for its newline
                offset += len(complete)
                records = _records(complete.decode("utf-8", errors="replace").splitlines())
                if records:
                    new = pd.DataFrame(records)
                    frame = new if frame.empty else pd.concat([frame, new], ignore_index=True)
            cls._files[key] = (inode, offset, frame)
            while len(cls._files) > cls.keep:
                cls._files.pop(next(iter(cls._files)))
            return frame


def _records(lines: Sequence[str]) -> list[dict[str, Any]]:
    """The JSON objects among `lines`; a broken line (a power cut mid-write) is passed over."""
    records = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


@dataclass(frozen=True)
class RunDir:
    path: Path

    @classmethod
    def for_id(cls, run_id: str) -> "RunDir":
        """The folder of a run id, always a folder right under runs/: an id from a URL, a form or the command line
        with a `/`, a NUL or `..` (`/runs?run=../../x`) is no run, whatever is at that path."""
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id) or ".." in run_id:
            raise ValueError(f"run: no such run {str(run_id)[:80]!r} (a run id is letters, digits, '.', '_' and '-')")
        return cls(runs_root() / run_id)

    @classmethod
    def find(cls, ref: str, anywhere: bool = False) -> "RunDir":
        """A run id, a unique id prefix, or a path to a run folder of this lab or a folder inside one (its model/):
        nothing outside runs/. `anywhere`: also a run folder of another lab, for what only reads a model (the
        command line's `eval --run PATH`, `predict`); never for what a page or a URL asks."""
        if ref and "/" in str(ref) and Path(ref).is_dir():
            path, root = Path(ref).resolve(), runs_root().resolve()
            if root in path.parents:
                return cls(root / path.relative_to(root).parts[0])
            if anywhere and (path / "config.json").exists() and (path / "status.json").exists():
                return cls(path)
        run = cls.for_id(ref)
        if run.path.is_dir():
            return run
        matches = sorted(p for p in runs_root().glob(f"{ref}*") if p.is_dir())
        jobs = [p for p in matches if "." not in p.name[len(ref):]]
        if len(jobs) == 1 and all(p.name.startswith(jobs[0].name + ".") for p in matches if p != jobs[0]):
            matches = jobs  # a pipeline's id prefix also matches its stages (<id>.source, ...): it means the pipeline
        if len(matches) == 1:
            return cls(matches[0])
        if len(matches) > 1:
            raise ValueError(f"run: {ref!r} matches {len(matches)} runs; give more of the id")
        raise ValueError(f"run: no run {ref!r} under {runs_root()}")

    @property
    def run_id(self) -> str:
        return self.path.name

    config_path = property(lambda self: self.path / "config.json")
    job_path = property(lambda self: self.path / "run.json")
    status_path = property(lambda self: self.path / "status.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    log_path = property(lambda self: self.path / "log.txt")
    model_dir = property(lambda self: self.path / "model")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    evals_dir = property(lambda self: self.path / "evals")
    stop_flag = property(lambda self: self.path / "STOP")
    pause_flag = property(lambda self: self.path / "PAUSE")

    # -- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return read_json(self.status_path, default={}) or {}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into status.json (the worker is the only writer of a run's status)."""
        status = self.status()
        status.update(fields)
        if status.get("state") in TERMINAL_STATES:
            status["phase"] = None  # what a worker is doing ends with it, however the run ended
        status["updated_at"] = now()
        try:
            write_json_atomic(self.status_path, status)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            # A full disk has no room for the temporary copy; in place, the file reuses its own blocks. A reader
            # that catches it half-written sees no status for a moment (read_json), never a traceback.
            self.status_path.write_text(json.dumps(status, indent=2, default=str), encoding="utf-8")
        return status

    def mark_worker(self) -> None:
        self.update_status(pid=os.getpid(), host=socket.gethostname(), pgid=_pgid(), worker_started_at=now())

    def stage(self, name: str) -> "RunDir":
        """A pipeline's stage folder: `<pipeline id>.<name>` beside it."""
        return RunDir(self.path.with_name(f"{self.run_id}.{name}"))

    # -- config / metrics / evals ------------------------------------------------------------
    def write_config(self, kind: str, settings: dict[str, Any], parent: str | None = None,
                     stage: str | None = None, **job: Any) -> None:
        """config.json holds the settings alone (a file `--config` takes as it is); run.json what the folder is."""
        write_json_atomic(self.config_path, settings)
        write_json_atomic(self.job_path, {"kind": kind, "parent": parent, "stage": stage, **job})

    def job(self) -> dict[str, Any]:
        """kind (core/kinds.py: train, trial, pipeline, eval, curve, search), parent (a stage's pipeline or a trial's search), stage (its name),
        and a trial's number and id in its study; None for each that does not apply."""
        data = read_json(self.job_path)
        if not isinstance(data, dict):
            data = read_json(self.config_path, {}) or {}
        trial = data.get("trial") is not None  # a trial written before trials were a kind of their own said "train"
        job = {"kind": "trial" if trial else data.get("kind") or "train", "parent": data.get("parent"),
               "stage": data.get("stage")}
        return {**job, **{k: data[k] for k in ("trial", "trial_id") if k in data}}

    def config(self) -> dict[str, Any]:
        """The settings of config.json (as its dataclass's from_dict takes them)."""
        data = read_json(self.config_path)
        if not isinstance(data, dict):
            raise ConfigError("config", f"{self.config_path} is missing or not valid JSON")
        if self.job_path.exists():  # settings alone (a search's own `stage` setting among them)
            return data
        return {k: v for k, v in data.items() if k not in JOB_KEYS}

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def evals(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p in sorted(self.evals_dir.glob("*/metrics.json")):
            data = read_json(p)
            if isinstance(data, dict):
                out[p.parent.name] = data
        return out

    def has_model(self) -> bool:
        return (self.model_dir / "config.json").exists() and any(self.model_dir.glob("*.safetensors"))

    def require_model(self) -> Path:
        """The folder of this run's trained model, or the error that says the run has none yet."""
        if not self.has_model():
            raise ValueError(f"run: {self.run_id} has no trained model (state: {self.status().get('state', 'unknown')})")
        return self.model_dir

    def request_stop(self) -> None:
        self.stop_flag.write_text(str(now()))

    def stop_requested(self) -> bool:
        return self.stop_flag.exists()

    def pause(self, at_step: int = 0) -> None:
        """Ask a training run to wait after its current step (or once it reaches `at_step`), holding its memory but
        no CPU, until `unpause`; a stop still ends it."""
        self.pause_flag.write_text(str(int(at_step)))

    def unpause(self) -> None:
        self.pause_flag.unlink(missing_ok=True)

    def paused_from(self) -> int | None:
        """The step a pause holds the run at (0: the next one); None when no pause is asked for."""
        try:
            text = self.pause_flag.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else 0

    def log(self, message: str) -> None:
        """A timestamped line in log.txt (the worker's stdout also lands there), and on a foreground command's
        terminal (`Terminal`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        Terminal.say(f"{line[:11]}{self.run_id}: {message}")

    def fail(self, exc: BaseException, full: bool | None = None) -> dict[str, Any]:
        """The worker's last word on an error: the traceback in log.txt, its first line in status.json. On a full
        disk (`full`: as found before room was made; else looked at now) the log may not take it; the status must."""
        import traceback

        try:
            self.log("".join(traceback.format_exception(exc)))
        except OSError:
            pass
        full = disk_full(exc, self.path) if full is None else full
        return self.update_status(state="failed", error=error_line(exc, full=full), ended_at=now())


def disk_full(exc: BaseException, where: Path | None = None) -> bool:
    """ENOSPC anywhere in the error's chain, as an OSError or in the words of a library that wraps it (safetensors:
    `StorageFull`), or, where a library's words hide it (torch.save: "unexpected pos"), almost no room left at
    `where` as the error arrives."""
    if where is not None:
        try:
            if shutil.disk_usage(where).free < 4 * 2**20:
                return True
        except OSError:
            pass
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if any(mark in str(exc) for mark in ("No space left on device", "StorageFull", "code: 28")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def error_line(exc: BaseException, full: bool | None = None) -> str:
    """The first line of an error's message (its type when it has none): what status.json and the UI show; a full
    disk (`full`, or found in the error) is said first, whatever words the error had for it."""
    line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    full = disk_full(exc) if full is None else full
    return f"disk full: no space left on device ({line[:160]})" if full else line


# ---------------------------------------------------------------------------------------
# Comparing runs: what each reached, and the settings on which they differ (the rest is noise to a reader).
def headline(metrics: dict[str, Any] | None) -> float | None:
    """The one accuracy a list shows for a run: a training run's test accuracy, a pipeline's fine-tuned target
    row, an evaluation's accuracy, a search's best (when it searched an accuracy)."""
    m = metrics or {}
    if m.get("metric") in ("eval_accuracy", "transfer"):
        return m.get("best_value")
    return m.get("test_accuracy", m.get("target_finetuned", m.get("accuracy")))


def iter_runs() -> Iterator[RunDir]:
    """Every run folder, newest first (scandir: whether an entry is a folder comes with the listing, no stat each)."""
    root = runs_root()
    with os.scandir(root) as entries:
        names = sorted((e.name for e in entries if not e.name.startswith(".") and e.is_dir()), reverse=True)
    for name in names:
        yield RunDir(root / name)


def _pgid() -> int | None:
    try:
        return os.getpgid(0)
    except OSError:  # pragma: no cover - non-POSIX
        return None


# ---------------------------------------------------------------------------------------
# Liveness
def worker_alive(status: dict[str, Any]) -> bool | None:
    """True/False for a worker on this host; None when it cannot be known (another host, no pid yet)."""
    pid, host = status.get("pid"), status.get("host")
    if not pid or (host and host != socket.gethostname()):
        return None
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        # A pid reused after a reboot belongs to a process that started after our worker did.
        started = status.get("worker_started_at") or status.get("started_at")
        return not (started and proc.create_time() > float(started) + 5)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def children(run: RunDir) -> list[RunDir]:
    """A pipeline's stages, a search's trials and source model: the folders `<id>.<name>` beside it."""
    return [RunDir(p) for p in sorted(run.path.parent.glob(f"{run.run_id}.*")) if p.is_dir()]
