"""Where things are: the project, the lab's home folder, local files, and whether the Hugging Face Hub answers.

Near the bottom of core's layers: every other module may import it; it imports only core.errors.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json"}


def artifacts_root() -> Path:
    """`$SENTIMENT_LAB_HOME` if set (tests use a temporary folder), else `<project>/artifacts`."""
    root = Path(os.environ.get("SENTIMENT_LAB_HOME") or PROJECT_ROOT / "artifacts")
    (root / "runs").mkdir(parents=True, exist_ok=True)
    return root


def runs_root() -> Path:
    return artifacts_root() / "runs"


def resolve_local(spec: str) -> Path | None:
    """A local file or folder for `spec`, looked up from the working directory, then the project root."""
    p = Path(spec).expanduser()
    for candidate in ([p] if p.is_absolute() else [Path.cwd() / p, PROJECT_ROOT / p]):
        if candidate.exists():
            return candidate.resolve()
    return None


def looks_like_path(spec: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else with a slash or a file suffix is a path."""
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or Path(spec).suffix.lower() in LOCAL_FORMATS


_probe: tuple[float, bool] | None = None  # (when, answer) of the last connect to the Hub


def hub_reachable(max_age: float = float("inf"), timeout: float = 1.5) -> bool:
    """One TCP connect to the Hub, reused for `max_age` seconds (by default for the life of the process: a
    worker asks once; the app's sidebar asks again each minute). Without it, a missing model is only found
    missing after the Hub client's retries."""
    global _probe
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("SENTIMENT_LAB_OFFLINE") == "1":
        return False
    if _probe is None or time.time() - _probe[0] > max_age:
        try:
            socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
            _probe = (time.time(), True)
        except OSError:
            _probe = (time.time(), False)
    return _probe[1]


def unreachable(field: str, name: str) -> ConfigError:
    """The one message for a model (`field` "model") or dataset that is neither here nor reachable."""
    what, hint = (("a local folder or cached", "use minilm-offline or a local folder") if field == "model"
                  else ("a local file or folder", "offline?"))
    return ConfigError(field, f"{name!r} is not {what}, and the Hugging Face Hub cannot be reached from this "
                              f"machine ({hint})")


def studies_url() -> str:
    """Where the searches' Optuna studies live (SQLite, one study per search, named by its id)."""
    return f"sqlite:///{artifacts_root() / 'optuna.db'}"
