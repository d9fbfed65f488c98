"""Where queued runs are run: `local`, one dispatcher process on this machine (the default), or `ray`, a Ray
cluster through the Ray Jobs API. `SENTIMENT_LAB_BACKEND` picks one; `RAY_ADDRESS` says where the cluster's
dashboard listens (`http://HEAD:8265`).

Either way a run is started as `python -m core _work RUN_ID` and writes its own folder. With `ray`, each queued run
becomes one Ray job whose entrypoint reserves the run's resources (GPUs = num_processes where the cluster has GPUs,
CPUs otherwise), so Ray decides where and when it starts. The folder's status.json remembers the job
(`ray_job`, `ray_address`, `submitted_at`), and Ray's own view of the job is asked only where the run folder cannot
tell (a worker on another node, a job that never started).

Every node must see SENTIMENT_LAB_HOME at the same path (shared storage) and have the project and its Python
environment at the same paths as the machine that submits: the entrypoint is this project's interpreter and folder.
"""

from __future__ import annotations

import math
import os
import shlex
import socket
import sys
from typing import Any
from urllib.parse import urlparse

from . import kinds
from .errors import ConfigError
from .paths import PROJECT_ROOT, artifacts_root
from .runs import RunDir, now

BACKENDS = ("local", "ray")
INSTALL_HINT = "make setup-ray (or pip install -r requirements-ray.txt)"
# Passed on to every Ray job, so that a worker (and a search's own dispatcher) sees the lab as the submitter does.
PASSED_ON = ("SENTIMENT_LAB_", "HF_", "TRANSFORMERS_", "MLFLOW_")


class ClusterUnreachable(ValueError):
    """The cluster did not answer: nothing was sent, and nothing changed in the lab."""


def backend_name() -> str:
    name = (os.environ.get("SENTIMENT_LAB_BACKEND") or "local").strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"SENTIMENT_LAB_BACKEND: {name!r} is not a backend (local or ray)")
    return name


def max_concurrent() -> int:
    """How many runs the local dispatcher trains at once."""
    return max(1, int(os.environ.get("SENTIMENT_LAB_MAX_CONCURRENT", "1")))


def concurrent_trials(num_processes: int = 1) -> int:
    """How many of a search's trials to keep queued or running: SENTIMENT_LAB_MAX_CONCURRENT where set; on a Ray
    cluster otherwise as many trials as its nodes hold at once."""
    if os.environ.get("SENTIMENT_LAB_MAX_CONCURRENT") or backend_name() == "local":
        return max_concurrent()
    cluster = RayCluster.from_env()
    return max(1, cluster.slots(cluster.request_for(num_processes)))


def describe() -> dict[str, Any]:
    """What the app and `runs` show: the backend, and for Ray the cluster's address, nodes and free resources.
    Never raises: a problem is the `error` entry."""
    try:
        name = backend_name()
        if name == "local":
            return {"backend": "local", "max_concurrent": max_concurrent()}
        cluster = RayCluster.from_env()
        info = {"backend": "ray", "address": cluster.address}
        nodes = cluster.nodes()
        info.update(nodes=len(nodes), total=_sum(n["total"] for n in nodes), free=_sum(n["free"] for n in nodes))
        return info
    except ValueError as exc:
        return {"backend": os.environ.get("SENTIMENT_LAB_BACKEND", "local"), "address": _address(), "error": str(exc)}


def summary(info: dict[str, Any]) -> str:
    """describe() as one line."""
    if info["backend"] == "local" and "error" not in info:
        return f"backend: local (this machine, {info['max_concurrent']} run(s) at once)"
    if "error" in info:
        return f"backend: {info['backend']}: {info['error']}"
    free = ", ".join(f"{_num(info['free'].get(r, 0))} of {_num(info['total'][r])} {r}s" for r in ("CPU", "GPU")
                     if info["total"].get(r))
    return f"backend: ray at {info['address']} ({info['nodes']} node(s); free: {free or 'nothing'})"


def _sum(dicts) -> dict[str, float]:
    total: dict[str, float] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0.0) + v
    return total


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _address() -> str | None:
    # Inside a Ray job, RAY_ADDRESS is the cluster's internal (GCS) address; the job's own submitter passes the
    # dashboard's in RAY_API_SERVER_ADDRESS, which Ray's job client also prefers.
    return os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")


# ---------------------------------------------------------------------------------------
class RayCluster:
    """One Ray cluster, reached through its dashboard (the Jobs API). One per address and process."""

    _known: dict[str, "RayCluster"] = {}

    def __init__(self, address: str):
        self.address = address
        self._client = None

    @classmethod
    def from_env(cls, address: str | None = None) -> "RayCluster":
        try:
            import ray.job_submission  # noqa: F401
        except ImportError:
            raise ValueError(f"SENTIMENT_LAB_BACKEND=ray needs Ray's job client, which is not installed: "
                             f"{INSTALL_HINT}") from None
        address = address or _address()
        if not address:
            raise ValueError("SENTIMENT_LAB_BACKEND=ray needs RAY_ADDRESS, the cluster's dashboard "
                             "(e.g. http://HEAD:8265)")
        if address not in cls._known:
            cls._known[address] = cls(address)
        return cls._known[address]

    # -- talking to it -----------------------------------------------------------------------
    def client(self):
        if self._client is None:
            url = self.address if "://" in self.address else f"http://{self.address}"
            parsed = urlparse(url)
            try:  # Ray's client waits as long as the network does; a closed or unroutable address answers here
                socket.create_connection((parsed.hostname, parsed.port or 8265), timeout=3).close()
                from ray.job_submission import JobSubmissionClient

                self._client = JobSubmissionClient(url)
            except Exception as exc:
                raise ClusterUnreachable(f"the Ray cluster at {self.address} cannot be reached "
                                         f"({_first_line(exc)})") from None
        return self._client

    def _call(self, method: str, *args, **kwargs):
        try:
            return getattr(self.client(), method)(*args, **kwargs)
        except ClusterUnreachable:
            raise
        except (ConnectionError, OSError) as exc:
            self._client = None  # reconnect next time: the head may come back
            raise ClusterUnreachable(f"the Ray cluster at {self.address} cannot be reached "
                                     f"({_first_line(exc)})") from None
        except Exception as exc:
            if type(exc).__module__.startswith("requests"):
                self._client = None
                raise ClusterUnreachable(f"the Ray cluster at {self.address} cannot be reached "
                                         f"({_first_line(exc)})") from None
            raise

    def nodes(self) -> list[dict[str, Any]]:
        """The live nodes: ip, total and free resources (CPU, GPU, memory), from the cluster's own status."""
        import requests

        self.client()
        try:
            data = requests.get(f"{self.client().get_address()}/api/cluster_status", timeout=5).json()
            by_node = data["data"]["clusterStatus"]["loadMetricsReport"]["usageByNode"] or {}
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            self._client = None
            raise ClusterUnreachable(f"the Ray cluster at {self.address} did not say what it has "
                                     f"({_first_line(exc)})") from None
        nodes = []
        for usage in by_node.values():
            ip = next((k.split(":", 1)[1] for k in usage if k.startswith("node:") and k != "node:InternalHead"), "?")
            total = {k: float(v[1]) for k, v in usage.items() if k in ("CPU", "GPU", "memory")}
            free = {k: float(v[1]) - float(v[0]) for k, v in usage.items() if k in ("CPU", "GPU", "memory")}
            nodes.append({"ip": ip, "head": "node:InternalHead" in usage, "total": total, "free": free})
        return nodes

    # -- what a run asks for ---------------------------------------------------------------------
    def request_for(self, processes: int, nodes: list[dict[str, Any]] | None = None) -> dict[str, float]:
        """Resources one run reserves: a GPU per process where the cluster has GPUs, else CPUs (1 per process, or
        SENTIMENT_LAB_RAY_CPUS), and nothing for a search's worker (it only asks and tells)."""
        if processes == 0:
            return {}
        nodes = self.nodes() if nodes is None else nodes
        cpus = float(os.environ.get("SENTIMENT_LAB_RAY_CPUS", "1")) * processes
        if any(n["total"].get("GPU") for n in nodes):
            return {"GPU": float(processes), "CPU": cpus}
        return {"CPU": cpus}

    def slots(self, request: dict[str, float]) -> int:
        """How many runs of this size the cluster holds at once."""
        if not request:
            return 1
        return sum(min(math.floor(n["total"].get(r, 0) / q) for r, q in request.items()) for n in self.nodes())

    def admit(self, kind: str, config: dict[str, Any]) -> dict[str, float]:
        """The resources a run will ask for, or a one-line refusal where no node of the cluster has them."""
        entry = kinds.get(kind)
        if entry.processes(config) and entry.machines(config) > 1:
            raise ConfigError("num_machines", "a run across machines uses accelerate's own launcher; with the ray "
                                              "backend, train on one node (num_processes GPUs)")
        nodes = self.nodes()
        if not nodes:
            raise ClusterUnreachable(f"the Ray cluster at {self.address} has no live node yet (just started? try "
                                     "again in a few seconds)")
        request = self.request_for(entry.processes(config), nodes)
        for resource, wanted in request.items():
            largest = max(nodes, key=lambda n: n["total"].get(resource, 0))
            has = largest["total"].get(resource, 0)
            if wanted > has:
                where = f"its largest node, {largest['ip']}, has {_num(has)}"
                raise ConfigError("num_processes", f"this run asks for {_num(wanted)} {resource}(s) on one node, "
                                                   f"and the Ray cluster at {self.address} cannot give that: {where}")
        return request

    # -- jobs --------------------------------------------------------------------------------------
    def submit(self, run: RunDir) -> str:
        """Send a queued run to the cluster as a Ray job; its status.json records the job."""
        status = run.status()
        request = self.admit(run.job()["kind"], run.config())
        job_id = f"{run.run_id}-q{int((status.get('queued_at') or now()) * 1000)}"
        env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ON)}
        env.update(SENTIMENT_LAB_HOME=str(artifacts_root()), SENTIMENT_LAB_BACKEND="ray", SENTIMENT_LAB_RAY_JOB=job_id,
                   RAY_API_SERVER_ADDRESS=self.client().get_address(), PYTHONUNBUFFERED="1")
        if request and "GPU" not in request:
            env["OMP_NUM_THREADS"] = str(max(1, int(request["CPU"])))  # torch takes every core of the node otherwise
        work = f"{shlex.quote(sys.executable)} -u -m core _work {shlex.quote(run.run_id)}"
        # Ray keeps the job's output in its own logs (`ray job logs`); the run folder keeps it in log.txt as well.
        script = f"set -o pipefail; cd {shlex.quote(str(PROJECT_ROOT))} && {work} 2>&1 | tee -a {shlex.quote(str(run.log_path))}"
        try:
            self._call("submit_job", entrypoint=f"bash -c {shlex.quote(script)}", submission_id=job_id,
                       runtime_env={"env_vars": env}, metadata={"lab_run_id": run.run_id},
                       entrypoint_num_cpus=request.get("CPU", 0), entrypoint_num_gpus=request.get("GPU", 0))
        except RuntimeError as exc:
            if "already" not in str(exc):  # sent once already (two dispatchers raced): it is Ray's now
                raise ValueError(f"the Ray cluster at {self.address} refused run {run.run_id}: "
                                 f"{_first_line(exc)}") from None
        run.update_status(ray_job=job_id, ray_address=self.address, submitted_at=now(), phase="sent to Ray",
                          resources=request)
        run.log(f"sent to the Ray cluster at {self.address} as job {job_id} "
                f"({', '.join(f'{_num(v)} {k}' for k, v in request.items()) or 'no resources'})")
        return job_id

    def job(self, job_id: str) -> Any | None:
        """Ray's JobInfo, or None where the cluster does not know the job (restarted since)."""
        try:
            return self._call("get_job_info", job_id)
        except RuntimeError as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
                return None
            raise ClusterUnreachable(f"the Ray cluster at {self.address}: {_first_line(exc)}") from None

    def stop_job(self, job_id: str) -> None:
        try:
            self._call("stop_job", job_id)
        except RuntimeError:
            pass  # already ended, or unknown to a restarted cluster


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------
# What the rest of core asks of a run that went through Ray
def submitted(status: dict[str, Any]) -> bool:
    """Sent to Ray since it was last queued (a resumed run is queued again, and sent again)."""
    return bool(status.get("ray_job")) and (status.get("submitted_at") or 0) >= (status.get("queued_at") or 0)


def ray_verdict(status: dict[str, Any]) -> tuple[str, str] | None:
    """Ray's word on a run's job: ("alive", "") while pending or running, ("never started", why) for a job that
    ended before its worker ran, ("ended", why) once it ended; None where Ray cannot be asked."""
    if not status.get("ray_job"):
        return None
    try:
        cluster = RayCluster.from_env(status.get("ray_address"))
        info = cluster.job(status["ray_job"])
    except ValueError:  # Ray not installed here, or the cluster unreachable: nobody can tell yet
        return None
    if info is None:
        return ("ended", f"the Ray cluster at {status.get('ray_address')} no longer knows job {status['ray_job']} "
                         "(the cluster was restarted)")
    state = str(getattr(info.status, "value", info.status))
    if state in ("PENDING", "RUNNING"):
        return ("alive", "")
    why = f"Ray job {status['ray_job']} {state.lower()}: {_first_line(Exception(info.message or ''))}"
    if info.driver_node_id is None and info.driver_exit_code is None:
        return ("never started", why)
    return ("ended", why)

