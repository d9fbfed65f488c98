"""The Try page in headless Chromium: milliseconds from the Classify click until every chosen model's answer is
on the screen, and until their word effects are, models already loaded. Prints one JSON object.

    python bench/try_browser.py --home LAB_HOME [--clicks 10]

LAB_HOME is a lab folder with a completed pipeline (the page then compares its three models), for instance
one that `python bench/accuracy.py --preset offline-quick --keep DIR` kept. Needs /usr/bin/chromium and
Playwright, as the browser tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from speed import TRY_REVIEW, machine  # noqa: E402  (one review for both Try figures)


def serve(home: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SENTIMENT_LAB_HOME": home, "SENTIMENT_LAB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
                             "--server.port", str(port), "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("error: streamlit did not start")


def click(page, url: str, explain: bool) -> tuple[float, float | None, int]:
    """One click on a freshly opened Try page: milliseconds until every chosen model's answer is on the screen,
    and (with `explain`) until their word effects are too; and how many models answered."""
    page.goto(url + "/try")
    page.get_by_role("button", name="Classify", exact=True).wait_for(timeout=60_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=60_000)
    chosen = page.locator('[data-testid="stMultiSelect"]').first.inner_text().splitlines()[1:]  # under its label
    models = len([line for line in chosen if line.strip()])
    if not models:
        raise SystemExit("error: the Try page offers no model: train one first")
    page.locator("textarea").first.fill(TRY_REVIEW)
    if explain:
        page.get_by_text("Which words moved each model").click()
    page.wait_for_timeout(1500)  # the checkbox's and the text's reruns are over before the clock starts
    t0 = time.perf_counter()
    page.get_by_role("button", name="Classify", exact=True).click()
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=\"stMetric\"]').length >= {models}",
                           timeout=60_000, polling="raf")
    answered = (time.perf_counter() - t0) * 1000
    if not explain:
        return answered, None, models
    page.wait_for_function(f"() => document.querySelectorAll('.word-effects').length >= {models}",
                           timeout=60_000, polling="raf")
    return answered, (time.perf_counter() - t0) * 1000, models


def summary(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"median_ms": round(statistics.median(ms), 1), "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
            "max_ms": round(ms[-1], 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, help="a lab folder with trained models")
    ap.add_argument("--clicks", type=int, default=10)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    proc, url = serve(str(Path(args.home).resolve()))
    out: dict = {"machine": machine(), "words": len(TRY_REVIEW.split())}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for explain in (False, True):
                click(page, url, explain)  # loads the models into the app's cache
                answered, shaded, models = zip(*(click(page, url, explain) for _ in range(args.clicks)))
                out["with_word_effects" if explain else "answer_only"] = {
                    "models": models[0], "answers": summary(answered),
                    **({"word_effects": summary(shaded)} if explain else {})}
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
