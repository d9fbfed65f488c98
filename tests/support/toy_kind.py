"""A toy kind of job, registered from outside core/ (SENTIMENT_LAB_KINDS=tests.support.toy_kind): it counts to
`steps`, one step every `pause` seconds, into metrics.jsonl, and honours stop and resume as a training run does.
That it works through the command line with no other file touched is the registry's test."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from core.config import Settings, setting
from core.errors import ConfigError
from core.kinds import JobKind, Report, register
from core.runs import RunDir, append_jsonl, now


@dataclass
class ToyConfig(Settings):
    steps: int = setting(50, min=1, help="How far to count.")
    pause: float = setting(0.05, between=(0.0, 5.0), help="Seconds a step takes.")
    name: str = setting("", help="A label.")

    def validate(self) -> None:
        if self.steps > 100_000:
            raise ConfigError("steps", f"counting to {self.steps} takes too long")


def run_toy(cfg: ToyConfig, run: RunDir, resume: bool = False) -> dict[str, Any]:
    done = run.status().get("step") or 0 if resume else 0
    run.mark_worker()
    run.update_status(state="running", total_steps=cfg.steps, started_at=run.status().get("started_at") or now())
    for step in range(done + 1, cfg.steps + 1):
        if run.stop_requested():
            return run.update_status(state="stopped", ended_at=now())
        time.sleep(cfg.pause)
        append_jsonl(run.metrics_path, {"step": step, "loss": 1.0 / step})
        run.update_status(step=step)
    return run.update_status(state="completed", metrics={"counted": cfg.steps}, ended_at=now())


def report(run: RunDir, **_: Any) -> Report:
    steps = [m["step"] for m in run.metrics()]
    return Report({"run_id": run.run_id, "steps": steps}, f"{run.run_id}: counted to {max(steps, default=0)}")


register(JobKind("toy", "count to N (a test's kind)", settings=f"{__name__}:ToyConfig", runner=f"{__name__}:run_toy",
                 results=f"{__name__}:report"))
