"""The app shared beyond this machine (issue 37): sign-in on any address but 127.0.0.1, run ids and uploads that
cannot reach outside the lab, user text that stays text, and a full disk that loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli, tiny_config
from core.runs import RunDir, read_jsonl

def shown(at) -> str:
    """Every text an AppTest's page shows: headings, markdown, messages, labels, options, links and tables."""
    parts = [str(e.value) for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                                       "error", "success", "text", "code") for e in at.get(kind)]
    parts += [str(o) for kind in ("selectbox", "multiselect", "radio") for e in at.get(kind) for o in e.options]
    parts += [e.label for kind in ("button", "text_input", "text_area", "checkbox", "toggle") for e in at.get(kind)]
    parts += [e.proto.label for e in at.get("page_link")]
    parts += [e.value.to_csv() for e in at.get("dataframe")]
    return "\n".join(parts)


HOSTILE_IDS = ["../../x", "../runs", "a/b", "x\x00y", "x..y", "..", "/etc/passwd", "%2e%2e%2fx", "a" * 300]


# -- sign-in ------------------------------------------------------------------------------------------------------------
def test_sign_in_is_needed_on_every_address_but_loopback(tmp_path, monkeypatch):
    from core.auth import is_loopback, oidc_configured, sign_in_mode

    monkeypatch.delenv("SENTIMENT_LAB_PASSWORD", raising=False)
    monkeypatch.delenv("SENTIMENT_LAB_NO_AUTH", raising=False)
    none = tmp_path / "none.toml"
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "10.0.0.5", "lab.example.org"))
    assert sign_in_mode("127.0.0.1", secrets=none) == "none"
    with pytest.raises(ValueError, match=r"^sign-in: the app would listen on 0\.0\.0\.0.*--no-auth"):
        sign_in_mode("0.0.0.0", secrets=none)
    assert sign_in_mode("0.0.0.0", no_auth=True, secrets=none) == "open"
    monkeypatch.setenv("SENTIMENT_LAB_PASSWORD", "pw")
    assert sign_in_mode("0.0.0.0", secrets=none) == "password"

    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "http://lab:8501/oauth2callback"\ncookie_secret = "x"\n')
    assert not oidc_configured(secrets)  # no provider yet
    secrets.write_text(secrets.read_text() + '[auth.google]\nclient_id = "id"\nclient_secret = "s"\n'
                       'server_metadata_url = "https://accounts.google.com/.well-known/openid-configuration"\n')
    assert oidc_configured(secrets) and sign_in_mode("0.0.0.0", secrets=secrets) == "oidc"
    secrets.write_text("[auth\nbroken")
    assert not oidc_configured(secrets)


def test_each_failed_password_makes_the_next_answer_wait_longer(monkeypatch):
    from core.auth import Throttle, check_password, password_matches

    monkeypatch.setenv("SENTIMENT_LAB_PASSWORD", "correct horse")
    assert password_matches("correct horse") and not password_matches("correct hors") and not password_matches("")
    assert not password_matches("x", expected="")  # no password set: nothing matches
    waits, throttle = [], Throttle(cap=8)
    for guess in ("a", "b", "c", "d", "e"):
        assert not check_password(guess, "10.0.0.9", throttle, sleep=waits.append)
    assert waits == [0, 1, 2, 4, 8]
    assert check_password("x", "10.0.0.7", throttle, sleep=waits.append) is False and waits[-1] == 0  # per client
    assert check_password("correct horse", "10.0.0.9", throttle, sleep=waits.append) and waits[-1] == 8
    assert throttle.delay("10.0.0.9") == 0  # signed in: the count starts again


def test_the_app_refuses_to_start_shared_with_no_sign_in(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SENTIMENT_LAB_PASSWORD", "SENTIMENT_LAB_NO_AUTH")}
    out = subprocess.run([sys.executable, "-m", "core", "app", "--host", "0.0.0.0", "--port", "1"], cwd=ROOT,
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "sign-in: the app would listen on 0.0.0.0" in out.stderr and "SENTIMENT_LAB_PASSWORD" in out.stderr
    # as the README says it: `make run HOST=0.0.0.0`
    out = subprocess.run(["make", "-s", "run", "HOST=0.0.0.0", "PORT=1"], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode != 0 and "sign-in: the app would listen on 0.0.0.0" in out.stderr, out.stdout + out.stderr


@pytest.fixture
def shared(monkeypatch, lab_home):
    """AppTest of app.py as if it listened on every address, with a password."""
    from streamlit import config

    monkeypatch.setenv("SENTIMENT_LAB_PASSWORD", "pw-for-tests")
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    yield lab_home
    config.set_option("server.address", before)


def test_signed_out_visitors_see_nothing_of_the_lab(shared, tiny_model, reviews_dir):
    from streamlit.testing.v1 import AppTest

    from core.jobs import create_run

    run = create_run("train", tiny_config(tiny_model, reviews_dir, name="secret-project"))
    for page in ("pages/runs.py", "pages/train.py", "pages/try.py"):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.switch_page(page)
        at.query_params["run"] = run.run_id
        at.run()
        assert not at.exception
        text = shown(at)
        assert "Password" in text and "Sign in" in text
        assert "secret-project" not in text and run.run_id not in text and "Machine" not in text, text
        assert [t.value for t in at.text_input] == [""]  # the password, and nothing else
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.text_input(key="sign_in_password").input("wrong")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."]
    at.text_input(key="sign_in_password").input("pw-for-tests")
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert any(b.label == "Sign out" for b in at.sidebar.button)
    assert "secret-project" in shown(at) and "Queue" in shown(at)  # the lab, once signed in


def test_a_server_started_around_the_check_still_refuses(monkeypatch, lab_home):
    """`streamlit run app.py --server.address 0.0.0.0`, not through `make run`: the app itself says no."""
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("SENTIMENT_LAB_PASSWORD", raising=False)
    monkeypatch.delenv("SENTIMENT_LAB_NO_AUTH", raising=False)
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    finally:
        config.set_option("server.address", before)
    assert [e.value for e in at.error][0].startswith("sign-in: the app would listen on 0.0.0.0")
    assert "Machine" not in shown(at) and not at.text_input and not at.button


# -- nothing escapes the lab ------------------------------------------------------------------------------------------
def test_hostile_run_ids_are_no_such_run_on_the_command_line(lab_home, tmp_path):
    victim = tmp_path / "victim"  # a run-like folder outside the lab, that delete must not touch
    victim.mkdir()
    (victim / "config.json").write_text("{}")
    for ref in [r for r in HOSTILE_IDS if "\x00" not in r] + [str(victim), f"{lab_home}/runs/../../victim"]:  # argv holds no NUL
        for cmd in ("delete", "stop", "resume", "logs"):
            out = run_cli(cmd, ref)
            assert out.returncode == 2, (cmd, ref, out.stdout, out.stderr)
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: run: no "), (cmd, ref, out.stderr)
    assert (victim / "config.json").exists()


def test_hostile_run_ids_in_urls_show_no_such_run(lab_home, tiny_model, reviews_dir):
    from streamlit.testing.v1 import AppTest

    from core.jobs import create_run

    create_run("train", tiny_config(tiny_model, reviews_dir))
    for page, key in (("pages/runs.py", "run"), ("pages/train.py", "from_run"), ("pages/train.py", "init_from"),
                      ("pages/transfer.py", "pipeline"), ("pages/search.py", "search"), ("pages/try.py", "run")):
        for ref in HOSTILE_IDS + ["/tmp", str(ROOT)]:
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
            at.switch_page(page)
            at.query_params[key] = ref
            at.run()
            assert not at.exception, (page, key, ref, at.exception)


def test_an_upload_is_saved_under_the_lab_whatever_its_name(lab_home, tmp_path):
    from core.data import read_table_bytes, save_upload

    data = b"text,label\ngreat film,1\nawful film,0\n"
    for name in ("../../../etc/evil.csv", "/tmp/abs.csv", "a\x00b.csv", "<script>x</script>.csv", "..csv", " .csv"):
        path = save_upload(name, data)
        assert path.parent == lab_home / "uploads" and path.read_bytes() == data
        assert path.name.endswith(".csv") and "/" not in path.name and "\x00" not in path.name and "<" not in path.name
    assert sorted(p.name for p in tmp_path.rglob("*.csv") if lab_home not in p.parents) == []
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        read_table_bytes("binary.csv", bytes(range(256)) * 100)
    with pytest.raises(ValueError, match="is not .csv, .parquet or .jsonl"):
        read_table_bytes("x.exe", data)


def test_delete_removes_nothing_outside_runs(lab_home, tmp_path):
    from core import jobs

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    link = lab_home / "runs" / "20260101-000000-link-abcdef"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="is not a folder of"):
        jobs.delete(link.name)
    assert (outside / "keep.txt").read_text() == "mine"


def test_user_text_is_never_html_in_the_app(lab_home, tiny_model, reviews_dir):
    """A run's name, a dataset path, a review: Streamlit shows markdown's HTML as text, and the one place the app
    writes HTML itself (the word shading of the Try page) escapes every word."""
    from streamlit.testing.v1 import AppTest

    from core.jobs import create_run
    from pages.common import word_effects_html

    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    html = word_effects_html([(evil, 0.3), ("fine", -0.1)], 0.3)
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html
    run = create_run("train", tiny_config(tiny_model, reviews_dir, name=evil))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/runs.py")
    at.query_params["run"] = run.run_id
    at.run()
    assert not at.exception
    assert evil in shown(at)  # shown, as the text it is
    for md in at.markdown:  # only the app's own markup may ask for raw HTML
        assert not (md.allow_html and evil in md.value), md.value


# -- a full disk ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A 24 MB tmpfs as the lab's home (root, or a user namespace that may mount), unmounted at the end."""
    home = tmp_path / "small"
    home.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(home)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    monkeypatch.setenv("SENTIMENT_LAB_HOME", str(home))
    monkeypatch.setenv("SENTIMENT_LAB_OFFLINE", "1")
    monkeypatch.setenv("SENTIMENT_LAB_TRACKING", "none")
    yield home
    subprocess.run(["umount", "-l", str(home)], check=False)


def test_a_full_disk_fails_the_run_with_that_reason_and_resume_completes(small_disk, tiny_model, reviews_dir, tmp_path):
    cfg = tiny_config(tiny_model, reviews_dir, max_train_samples=48, batch_size=4, epochs=6, eval_steps=4,
                      keep_checkpoints=True)
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    out = run_cli("train", "--config", str(tmp_path / "c.json"), "--json")
    run = next(RunDir(p) for p in (small_disk / "runs").iterdir())
    status = run.status()
    assert out.returncode != 0 and status["state"] == "failed", (out.stderr[-2000:], status)
    assert status["error"].startswith("disk full: no space left on device"), status["error"]
    checkpoints = sorted(run.checkpoints_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert checkpoints, "no checkpoint was written before the disk filled"
    from core.training import complete_checkpoint

    assert all(complete_checkpoint(p) for p in checkpoints)  # the half-written one is gone; the earlier whole
    assert "half-written" in run.log_path.read_text()

    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)  # room again
    out = run_cli("resume", run.run_id, "--json")
    assert out.returncode == 0, out.stderr
    deadline = time.time() + 240
    while run.status().get("state") not in ("completed", "failed", "interrupted") and time.time() < deadline:
        time.sleep(0.5)
    assert run.status()["state"] == "completed", run.log_path.read_text()[-3000:]
    steps = [r["step"] for r in read_jsonl(run.metrics_path) if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == run.status()["total_steps"]


def test_half_written_files_are_read_past(lab_home, tiny_model, reviews_dir):
    """A power cut mid-write: status.json cut short, a metrics line without its end. The index, the CLI and the
    Runs page show the run (failed or with its curve), never a traceback."""
    from streamlit.testing.v1 import AppTest

    from core.jobs import create_run, list_runs

    run = create_run("train", tiny_config(tiny_model, reviews_dir))
    run.metrics_path.write_text('{"loss": 0.7, "step": 1, "epoch": 0.1}\n{"loss": 0.6, "st')
    run.status_path.write_text('{"state": "running", "pid": 12')
    assert [r["state"] for r in list_runs() if r["id"] == run.run_id] == ["failed"]
    out = run_cli("runs")
    assert out.returncode == 0 and run.run_id in out.stdout, out.stderr
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/runs.py")
    at.query_params["run"] = run.run_id
    at.run()
    assert not at.exception


def test_a_lab_of_many_runs_lists_them_and_draws_a_long_curve_thinned(lab_home):
    """bench/load.py's lab, small: every run listed; the Runs page draws a 5,000-step run with at most 2,000 points
    a curve, from the cached charts."""
    from streamlit.testing.v1 import AppTest

    from tests.support.lab import build_lab
    from core.jobs import list_runs

    ids = build_lab(lab_home, runs=12, long=1, lines=5000)
    rows = list_runs()
    assert sorted(r["id"] for r in rows) == sorted(ids) and {r["state"] for r in rows} == {"completed"}
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/runs.py")
    at.query_params["run"] = ids[0]
    at.run()
    assert not at.exception
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    loss = next(c for c in charts if c["layout"]["title"]["text"] == "Training loss")
    x = loss["data"][0]["x"]
    if isinstance(x, dict):  # plotly 6 sends numbers as base64 typed arrays
        import base64

        import numpy as np

        x = np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]).tolist()
    assert 1000 < len(x) <= 2002 and x[-1] == 5000
