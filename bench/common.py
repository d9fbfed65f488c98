"""What the benches share: the CPU model every timing is reported with, and a free local port."""

from __future__ import annotations

import platform
import socket
from pathlib import Path


def cpu_model() -> str:
    """/proc/cpuinfo's model name (the machine's processor name where there is none)."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
