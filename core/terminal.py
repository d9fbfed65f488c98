"""What a command run in the foreground shows on its stderr while work moves: log lines, a progress bar on a
terminal, a heartbeat elsewhere."""

from __future__ import annotations

import os
import time
from typing import Any


# ---------------------------------------------------------------------------------------
class Terminal:
    """Where a command run in the foreground shows work moving, on its stderr: every run's log lines as they are
    written, a progress bar for training and scoring where stderr is a terminal, and elsewhere (a pipe, a CI log)
    what is being done now, every `every` seconds. Off (a background worker, the app, `--quiet`) until `start`."""

    stream: Any = None
    doing = ""  # "p1.source: step 120/394 (epoch 0.30)", "scoring 1,200 of 2,000 windows": what the heartbeat says
    every = 30.0

    @classmethod
    def start(cls, stream: Any, every: float | None = None) -> None:
        import threading

        cls.stream, cls.every = stream, every or float(os.environ.get("SENTIMENT_LAB_PROGRESS_EVERY", 30))
        if not cls.bars():
            threading.Thread(target=cls._heartbeat, daemon=True, name="progress").start()

    @classmethod
    def bars(cls) -> bool:
        """Progress bars (tqdm) only on a terminal: in a file they are lines of carriage returns."""
        return cls.stream is not None and cls.stream.isatty()

    @classmethod
    def say(cls, line: str) -> None:
        if cls.bars():
            from tqdm import tqdm

            tqdm.write(line, file=cls.stream)  # above a bar that is being drawn, not through it
        elif cls.stream is not None:
            print(line, file=cls.stream, flush=True)

    @classmethod
    def _heartbeat(cls) -> None:
        while True:
            time.sleep(cls.every)
            if cls.doing:
                cls.say(f"[{time.strftime('%H:%M:%S')}] {cls.doing}")
