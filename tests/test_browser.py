"""The app in headless Chromium, as a user clicks it. Screenshots go to test-artifacts/ for people to look at.

Needs Debian's chromium (/usr/bin/chromium, installed by .ci/run) and Playwright for Python.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import CHROMIUM, ROOT, review_frame, tiny_config

SHOTS = ROOT / "test-artifacts"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A private lab folder and a review folder big enough for a validation split."""
    home = tmp_path_factory.mktemp("browser-lab")
    data = home / "reviews"
    data.mkdir()
    review_frame(300).to_parquet(data / "train.parquet")
    review_frame(16).to_parquet(data / "test.parquet")
    return home, data


def start_server(home: Path, host: str = "127.0.0.1", env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`python -m core app` on a free port, as `make run` starts it; returns once it is healthy."""
    port = free_port()
    env = {**os.environ, "SENTIMENT_LAB_HOME": str(home / "artifacts"), "SENTIMENT_LAB_OFFLINE": "1", **(env or {})}
    log = open(home / f"streamlit-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "core", "app", "--host", host, "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("streamlit did not start: " + (home / f"streamlit-{port}.log").read_text()[-2000:])


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium (Debian's) for every browser test of the run: they are all in this module, since
    Playwright's sync API holds an event loop while its browser lives, beside which asyncio.run (AppTest, among
    others) refuses to start."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (its own cookies and storage) and page."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    yield pg
    ctx.close()


@pytest.fixture(scope="module")
def server(lab):
    home, _ = lab
    proc, url = start_server(home)
    yield url
    proc.terminate()
    proc.wait(10)
    from core import jobs  # leave no worker behind

    os.environ["SENTIMENT_LAB_HOME"] = str(home / "artifacts")
    for run in jobs.iter_runs():
        if run.status().get("state") in ("queued", "running", "stopping"):
            jobs.stop(run.run_id, timeout=5, grace=2)


def settle(page, timeout=60_000):
    """Wait until Streamlit has finished running the script for this page."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')?.innerText.includes('Running')",
        timeout=timeout)
    page.wait_for_timeout(500)


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:2000]
    assert page.get_by_text("Page not found").count() == 0, "the URL did not resolve to its page"


@pytest.mark.parametrize("path, heading", [("/", "Sentiment Transfer Lab"), ("/train", "Train"), ("/runs", "Runs"),
                                           ("/search", "Search"), ("/transfer", "Transfer"), ("/try", "Try a review")])
def test_every_page_loads(server, page, path, heading):
    page.goto(server + path)
    settle(page)
    page.get_by_role("heading", name=heading).first.wait_for(timeout=30_000)
    # Widgets are drawn as grey skeletons until their first render: the page is loaded when none is left.
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=30_000)
    no_exception(page)
    # .streamlit/config.toml's toolbarMode: a local lab offers no "Deploy" to Streamlit's cloud
    assert page.get_by_role("button", name="Deploy").count() == 0
    shot(page, f"page-{path.strip('/') or 'overview'}")


def pick(page, select, option: str) -> None:
    """Choose an option of a selectbox as a user does: open it, and open it again if it closed under the click.
    (A click that lands while the expander above it is still opening focuses the box, and its list closes at once.)"""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        select.click()
        try:
            page.get_by_role("option", name=option).click(timeout=5_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            page.wait_for_timeout(500)


def loss_points(page) -> int:
    return page.evaluate("""() => {
        const plot = [...document.querySelectorAll('.js-plotly-plot')]
            .find(p => (p.layout?.title?.text || '').includes('Training loss'));
        // Plotly ships numpy arrays base64-encoded: _fullData holds the decoded point counts.
        return plot && plot._fullData ? plot._fullData.reduce((n, t) => n + (t._length || 0), 0) : 0; }""")


def test_train_watch_and_try_in_the_browser(server, page, lab, tiny_model):
    _, data = lab
    page.goto(server + "/train")
    settle(page)
    page.get_by_text("One run", exact=True).click()
    for label, value in [("Other model (Hub id or folder)", tiny_model), ("Source dataset", str(data)),
                         ("Epochs", "10"), ("Batch size", "1"), ("Train samples (0 = all)", "40"),
                         ("Max length", "32"), ("Learning rate", "1e-3")]:
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Tab")
    shot(page, "flow-1-train-form")
    page.get_by_role("button", name="🚀 Launch").click()
    page.get_by_text("Launched").wait_for(timeout=60_000)
    no_exception(page)
    shot(page, "flow-2-launched")

    page.get_by_role("link", name="Watch it on the Runs page").click()
    settle(page)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0", timeout=120_000)
    first = 0
    deadline = time.time() + 120
    while time.time() < deadline and first == 0:
        first = loss_points(page)
        page.wait_for_timeout(500)
    assert first > 0, "the loss chart never got a point"
    shot(page, "flow-3-runs-live")
    # No reload, no click: the fragment rereads metrics.jsonl by itself.
    deadline = time.time() + 60
    later = first
    while time.time() < deadline and later <= first:
        page.wait_for_timeout(1000)
        later = loss_points(page)
    assert later > first, f"the loss chart did not grow on its own ({first} -> {later})"
    shot(page, "flow-4-runs-grown")

    page.get_by_text("step 400/400").first.wait_for(timeout=300_000)  # 40 rows x 10 epochs / batch 1
    # The last step is shown before the test split is scored and the model saved; once the folder says completed,
    # the live view's next tick (2 s) reruns the whole page without its timer. Wait for that rerun to be over:
    # a dropdown opened during it is closed when the page is redrawn.
    home, _ = lab
    deadline = time.time() + 120
    while time.time() < deadline and not any(json.loads(f.read_text()).get("state") == "completed"
                                             for f in (home / "artifacts" / "runs").glob("*-train-*/status.json")):
        page.wait_for_timeout(500)
    page.wait_for_timeout(3000)
    settle(page)
    no_exception(page)
    shot(page, "flow-5-runs-finished")

    # Zero-shot on other data, from the finished run's details: a background eval job, then its figures there.
    watched = page.url
    assert "/runs?run=" in watched
    page.get_by_text("Evaluate this model on a dataset").click()
    pick(page, page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").first, "core/other_sources.csv")
    page.get_by_role("button", name="Queue the evaluation").click()
    page.get_by_text("Evaluation queued").wait_for(timeout=60_000)
    # The run picked while it was running stays picked now that it has finished (its label once had its state).
    assert page.url == watched
    page.get_by_text("Evaluations of this model").wait_for(timeout=30_000)
    page.get_by_text("Nothing running or queued").wait_for(timeout=180_000)  # the sidebar's queue, once it is done
    done = [json.loads(f.read_text()) for f in (home / "artifacts" / "runs").glob("*-eval-*/status.json")]
    assert [(s["state"], s["metrics"]["n"]) for s in done] == [("completed", 60)]  # the 60 bundled reviews
    page.wait_for_timeout(2000)  # tables are drawn on a canvas: the screenshot shows the row
    no_exception(page)
    shot(page, "flow-6-evaluated")

    page.goto(server + "/try")
    settle(page)
    shot(page, "flow-7-try-page")
    page.locator("textarea").first.fill("A warm, funny and wonderful film. I loved it.")
    page.get_by_role("button", name="Classify", exact=True).click()
    metric = page.locator('[data-testid="stMetric"]').first
    metric.wait_for(timeout=120_000)
    text = metric.inner_text()
    assert ("positive" in text or "negative" in text) and "%" in text
    no_exception(page)
    shot(page, "flow-8-try-answered")


def plot_points(page, title: str) -> int:
    return page.evaluate("""(title) => {
        const plot = [...document.querySelectorAll('.js-plotly-plot')]
            .find(p => (p.layout?.title?.text || '').includes(title));
        return plot && plot._fullData ? plot._fullData.reduce((n, t) => n + (t._length || 0), 0) : 0; }""", title)


def test_a_search_from_the_search_page_grows_without_a_reload(server, page, lab, tiny_model):
    _, data = lab
    page.goto(server + "/search")
    settle(page)
    overrides = f"model={tiny_model}\ndataset={data}\nmax_train_samples=40\nvalidation_size=10\nmax_eval_samples=16"
    page.get_by_label("Other settings for every trial", exact=False).fill(overrides + "\nmax_length=32\nprecision=fp32")
    trials = page.get_by_label("Trials", exact=True)
    trials.fill("3")
    trials.press("Tab")
    shot(page, "search-1-form")
    page.get_by_role("button", name="🔎 Launch search").click()
    page.get_by_text("of 3 trials finished").first.wait_for(timeout=60_000)
    no_exception(page)
    assert "/search?search=" in page.url
    # No reload, no click: the trials' count and Optuna's charts grow as trials finish.
    page.get_by_text("1 of 3 trials finished").first.wait_for(timeout=180_000)
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')]"
                           ".some(p => (p.layout?.title?.text || '').includes('Optimization history'))", timeout=60_000)
    first = plot_points(page, "Optimization history")
    shot(page, "search-2-one-trial")
    page.get_by_text("3 of 3 trials finished").first.wait_for(timeout=300_000)
    page.wait_for_timeout(3000)
    assert plot_points(page, "Optimization history") > first
    no_exception(page)
    shot(page, "search-3-finished")
    # The best trial's settings, on the Train page.
    page.get_by_role("link", name="Train with the best settings").click()
    settle(page)
    page.get_by_text("Filled in with the settings of").wait_for(timeout=30_000)
    from playwright.sync_api import expect

    expect(page.get_by_label("Source dataset", exact=True)).to_have_value(str(data), timeout=30_000)
    no_exception(page)


def test_the_data_efficiency_curve_in_the_browser(server, page, lab, tiny_model, tmp_path):
    from conftest import run_cli, tiny_pipeline

    home, data = lab
    pcfg = tiny_pipeline(tmp_path, data, tiny_model)
    (tmp_path / "pipe.json").write_text(json.dumps(pcfg.to_dict()))
    env = {"SENTIMENT_LAB_HOME": str(home / "artifacts")}
    out = run_cli("curve", "--config", str(tmp_path / "pipe.json"), "--labels", "8,16", "--seeds", "2",
                  "--min-steps", "4", "--json", env=env)
    assert out.returncode == 0, out.stderr
    curve_id = json.loads(out.stdout)["run_id"]
    page.goto(f"{server}/transfer?curve={curve_id}")
    settle(page)
    page.get_by_role("tab", name="What transfer buys: the data-efficiency curve").click()
    # live while it runs: the chart appears and fills in without a reload
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')]"
                           ".some(p => (p.layout?.title?.text || '').includes('Target accuracy against'))",
                           timeout=300_000)
    deadline = time.time() + 300
    while time.time() < deadline and plot_points(page, "Target accuracy against") < 2 * 2 + 2 * 4:
        page.wait_for_timeout(1000)  # two lines of two budgets, and their bands (four corners each)
    assert plot_points(page, "Target accuracy against") >= 12
    page.get_by_text("labels the transfer no longer helps").or_(page.get_by_text("budget measured")).first.wait_for(
        timeout=60_000)
    no_exception(page)
    shot(page, "curve-in-the-browser")


def test_a_page_reopened_after_a_restart_comes_with_the_router(tmp_path, browser):
    """A freshly started server whose first visitor asks for /runs?run=X (a tab reopened after a restart).

    Before any session has run app.py, Streamlit would run pages/runs.py on its own (legacy pages/
    folder): no sidebar, no wide layout. The page must come up inside the router, query intact.
    """
    proc, url = start_server(tmp_path)
    try:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        page.goto(f"{url}/runs?run=nothing-yet&run=nor-this")  # two runs compared: both stay in the link
        settle(page)
        page.get_by_role("heading", name="Runs").first.wait_for(timeout=30_000)
        page.locator('[data-testid="stSidebar"]').get_by_role("heading", name="Queue").wait_for(timeout=30_000)
        assert page.url.endswith("/runs?run=nothing-yet&run=nor-this")
        no_exception(page)
        ctx.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_readme_screenshots_of_the_transfer_table_and_the_curves(tmp_path, monkeypatch, browser, reviews_dir,
                                                                 tiny_model):
    """The README's two pictures, taken the way a user sees the pages: the Transfer page of a finished pipeline
    and a stage's curves on the Runs page. With SENTIMENT_LAB_SCREENSHOTS=LAB_HOME they show that lab's newest
    pipeline (a real one: `bench/accuracy.py --keep DIR`); otherwise a tiny pipeline trained here."""
    from conftest import tiny_pipeline
    from core.pipeline import run_pipeline
    from core.runs import RunDir

    site = tmp_path / "site"
    home = site / "artifacts"
    site.mkdir()
    if os.environ.get("SENTIMENT_LAB_SCREENSHOTS"):
        home.symlink_to(Path(os.environ["SENTIMENT_LAB_SCREENSHOTS"]).resolve())
    else:
        monkeypatch.setenv("SENTIMENT_LAB_HOME", str(home))
        assert run_pipeline(tiny_pipeline(tmp_path, reviews_dir, tiny_model), RunDir.for_id("readme"))["state"] == "completed"
    pipeline = sorted(p.name for p in (home / "runs").iterdir() if (p / "results.json").exists())[-1]
    proc, url = start_server(site)
    try:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        page.goto(f"{url}/transfer?pipeline={pipeline}")
        settle(page)
        page.get_by_text("Target-only baseline").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)  # the table is drawn on a canvas
        no_exception(page)
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "readme-transfer.png"))
        page.goto(f"{url}/runs?run={pipeline}.source")
        settle(page)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0", timeout=60_000)
        page.wait_for_timeout(1500)
        no_exception(page)
        assert loss_points(page) > 0
        page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "readme-curves.png"))
        ctx.close()
    finally:
        proc.terminate()
        proc.wait(10)


# -- shared beyond this machine (issue 37), in the browser -------------------------------------------------------------------------------------------------------
def test_sign_in_in_the_browser_on_every_address(tmp_path, page, tiny_model, reviews_dir, monkeypatch):
    """Bound to 0.0.0.0 with a password: a visitor sees a password box and nothing else, is refused with a wrong one,
    and once signed in gets the page and run the link asked for. A run named with HTML shows it as text."""
    from core.jobs import create_run

    monkeypatch.setenv("SENTIMENT_LAB_HOME", str(tmp_path / "artifacts"))
    evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    run = create_run("train", tiny_config(tiny_model, reviews_dir, name=evil))
    proc, url = start_server(tmp_path, host="0.0.0.0", env={"SENTIMENT_LAB_PASSWORD": "lab-pw"})
    try:
        page.goto(f"{url}/runs?run={run.run_id}")
        settle(page)
        page.get_by_label("Password", exact=True).wait_for(timeout=30_000)
        body = page.inner_text("body")
        assert run.run_id not in body and "Machine" not in body and "Runs" not in body, body[:1000]
        page.get_by_label("Password", exact=True).fill("not-it")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Wrong password.").wait_for(timeout=30_000)
        assert run.run_id not in page.inner_text("body")

        page.get_by_label("Password", exact=True).fill("lab-pw")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Runs").first.wait_for(timeout=60_000)
        settle(page)
        assert f"run={run.run_id}" in page.url  # the link that was asked for, after signing in
        page.get_by_text(evil).first.wait_for(timeout=30_000)  # the name, as text
        assert page.evaluate("() => window.__pwned") is None
        assert page.get_by_role("button", name="Sign out").count() == 1
    finally:
        proc.terminate()
        proc.wait(10)


def test_hostile_uploads_in_the_browser(tmp_path, page):
    """A 300 MB file, a binary file named .csv and a CSV of a million rows, on the Train and Try pages: each gets
    a clear message, no traceback, and nothing is written outside the lab."""
    big = tmp_path / "huge.csv"
    with open(big, "wb") as fh:
        fh.truncate(300 * 2**20)  # sparse: 300 MB to the browser, no time to write
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 400)
    rows = tmp_path / "million.csv"
    with open(rows, "w") as fh:
        fh.write("text,label\n")
        fh.writelines(f"review number {i} was {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(1_000_000))
    before = set(tmp_path.iterdir())
    proc, url = start_server(tmp_path)

    def upload(file: Path) -> None:  # the Train page, fresh, a file chosen as a user does
        page.goto(f"{url}/train")
        settle(page)
        page.get_by_text("Upload a file", exact=True).click()
        page.get_by_text("up to 200 MB").first.wait_for(timeout=30_000)  # the limit, said before a file is chosen
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(file))

    try:
        upload(big)
        page.get_by_text("200.0MB or smaller", exact=False).first.wait_for(timeout=30_000)
        no_exception(page)
        upload(binary)
        page.get_by_text("binary.csv is not UTF-8 text").wait_for(timeout=60_000)
        no_exception(page)
        upload(rows)
        page.get_by_text("Label counts").wait_for(timeout=120_000)
        uploads, deadline = tmp_path / "artifacts" / "uploads", time.time() + 120
        while not list(uploads.glob("million-*.csv")) and time.time() < deadline:
            page.wait_for_timeout(500)
        settle(page, timeout=120_000)
        no_exception(page)
        saved = list(uploads.glob("million-*.csv"))
        assert len(saved) == 1 and saved[0].stat().st_size == rows.stat().st_size, page.inner_text("body")[-3000:]
    finally:
        proc.terminate()
        proc.wait(10)
    new = {p.name for p in set(tmp_path.iterdir()) - before}
    assert all(n == "artifacts" or n.startswith("streamlit-") for n in new), new  # the lab's home and the log only
