"""A one-node Ray cluster of its own, on free ports, for tests/test_ray.py and bench/backend.py: started with
`ray start --head --block` in a process group of its own, so that stopping it stops nobody else's Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import free_port

RAY = Path(sys.executable).with_name("ray")


class Cluster:
    def __init__(self, folder: Path, cpus: int = 2):
        self.log, self.cpus = Path(folder) / "ray.log", cpus
        self.ports = {"--port": free_port(), "--dashboard-port": free_port(), "--ray-client-server-port": free_port(),
                      "--dashboard-agent-listen-port": free_port()}
        self.address = f"http://127.0.0.1:{self.ports['--dashboard-port']}"
        self.proc = None

    def start(self, timeout: float = 90) -> "Cluster":
        args = [str(RAY), "start", "--head", "--block", "--num-cpus", str(self.cpus), "--dashboard-host", "127.0.0.1",
                "--min-worker-port", "0", "--max-worker-port", "0", "--disable-usage-stats"]
        args += [str(x) for kv in self.ports.items() for x in kv]
        self.proc = subprocess.Popen(args, stdout=open(self.log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while not self.ready():  # the dashboard answers, and knows the node's resources (a few seconds later)
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the Ray cluster did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.3)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.address}/api/cluster_status", timeout=2) as r:
                return bool(json.load(r)["data"]["clusterStatus"]["loadMetricsReport"]["usageByNode"])
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def stop(self) -> None:
        """`ray start --block` drains (up to 30 s while jobs run) and stops the node's processes."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.crash()

    def crash(self) -> None:
        """The head node dies at once (no draining): its job drivers are left running without it."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def env(self) -> dict[str, str]:
        return {"SENTIMENT_LAB_BACKEND": "ray", "RAY_ADDRESS": self.address}
