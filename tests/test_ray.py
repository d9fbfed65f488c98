"""The ray backend against a real Ray cluster of the test's own (`ray start --head --num-cpus 2` on free ports):
runs sent as Ray jobs, stop and resume, kill -9, a search's trials, a cluster restarted under a run, and the
one-line refusals (no Ray installed, an unreachable address, a run bigger than any node)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.ray_cluster import RAY, Cluster, free_port
from conftest import ROOT, held, launch_paused, run_cli, tiny_config
from core.runs import RunDir, read_jsonl
from test_jobs import wait_for

pytest.importorskip("ray.job_submission", reason="the ray backend's tests need `make setup-ray`")


def ray_jobs(address: str) -> list[dict]:
    """Every job the cluster knows, as `ray job list` lists them (its output is Python's repr of the same
    JobDetails that the SDK returns, so the SDK's are read; the listing must name each of them)."""
    from ray.job_submission import JobSubmissionClient

    out = subprocess.run([str(RAY), "job", "list", "--address", address], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    jobs = [{"submission_id": j.submission_id, "status": j.status.value, "metadata": j.metadata,
             "start_time": j.start_time} for j in JobSubmissionClient(address).list_jobs()]
    assert all(f"submission_id='{j['submission_id']}'" in out.stdout for j in jobs)
    return jobs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("ray")).start()
    yield c
    c.stop()


@pytest.fixture
def ray_env(cluster, monkeypatch):
    for k, v in cluster.env().items():
        monkeypatch.setenv(k, v)
    return cluster


def launch(tmp_path, cfg, name):
    (tmp_path / f"{name}.json").write_text(json.dumps(cfg.to_dict()))
    out = run_cli("launch", "train", "--config", str(tmp_path / f"{name}.json"), "--json")
    assert out.returncode == 0, out.stderr
    return RunDir.for_id(json.loads(out.stdout)["run_id"])


def nothing_queued(lab_home: Path) -> bool:
    return not (lab_home / "runs").exists() or not any((lab_home / "runs").iterdir())


def state(run: RunDir) -> str:
    rows = json.loads(run_cli("runs", "--json").stdout)  # the listing reconciles, as the app's does
    return next(r["state"] for r in rows if r["id"] == run.run_id)


def training_steps(run: RunDir) -> list[int]:
    return [r["step"] for r in read_jsonl(run.metrics_path) if "loss" in r]


def test_three_minilm_runs_complete_as_ray_jobs_through_stop_and_kill_9(ray_env, minilm_path, reviews_dir, tmp_path):
    """Three MiniLM runs through Ray: one as it is, one stopped and resumed, one whose worker is killed with kill -9,
    seen interrupted with Ray's reason, and resumed. Each completes, with every step logged once."""
    cfg = tiny_config(minilm_path, reviews_dir, max_train_samples=40, batch_size=1, epochs=2, eval_steps=20,
                      max_length=32, precision="fp32")
    plain = launch(tmp_path, cfg.replace(name="plain"), "plain")
    # Held past their checkpoint of step 20 until stopped or killed.
    stopped, killed = (launch_paused("train", cfg.replace(name=n), at_step=23) for n in ("stopped", "killed"))

    wait_for(lambda: held(stopped), timeout=240, what="the run to stop, past a checkpoint")
    out = run_cli("stop", stopped.run_id, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["state"] == "stopped", out.stderr

    wait_for(lambda: held(killed), timeout=240, what="the run to kill, past a checkpoint")
    os.kill(killed.status()["pid"], signal.SIGKILL)
    wait_for(lambda: state(killed) == "interrupted", timeout=60, what="the killed run seen interrupted")
    assert killed.status()["error"], killed.status()

    for run in (stopped, killed):
        run.unpause()
        out = run_cli("resume", run.run_id, "--json")
        assert out.returncode == 0, out.stderr
    for run in (plain, stopped, killed):
        wait_for(lambda: run.status().get("state") in ("completed", "failed", "interrupted"), timeout=300,
                 what=f"{run.run_id} to end")
        assert run.status()["state"] == "completed", run.log_path.read_text()[-3000:]
        steps = training_steps(run)
        assert steps == sorted(set(steps)) and steps[-1] == run.status()["total_steps"] == 80  # each step once

    # Ray ran them: one job per start, the resumed runs' first jobs stopped or failed, every last one succeeded.
    jobs = [j for j in ray_jobs(ray_env.address) if (j.get("metadata") or {}).get("lab_run_id")]
    by_run = {}
    for j in sorted(jobs, key=lambda j: j["start_time"]):
        by_run.setdefault(j["metadata"]["lab_run_id"], []).append(j["status"])
    assert by_run[plain.run_id] == ["SUCCEEDED"]
    assert by_run[stopped.run_id][-1] == "SUCCEEDED" and len(by_run[stopped.run_id]) == 2
    assert by_run[killed.run_id] == ["FAILED", "SUCCEEDED"]
    assert "Ray job" in killed.log_path.read_text() or "worker process" in killed.log_path.read_text()

    # The folder has the same form as a run trained here: the same records, evaluations and files.
    local = RunDir.for_id(json.loads(run_cli("train", "--config", str(tmp_path / "plain.json"), "--json",
                                             env={"SENTIMENT_LAB_BACKEND": "local"}).stdout)["run_id"])
    assert sorted(p.name for p in plain.path.iterdir()) == sorted(p.name for p in local.path.iterdir())
    assert {tuple(sorted(r)) for r in read_jsonl(plain.metrics_path)} == {tuple(sorted(r)) for r in read_jsonl(local.metrics_path)}
    assert sorted(json.loads((plain.path / "evals" / "reviews-test" / "metrics.json").read_text())) == \
        sorted(json.loads((local.path / "evals" / "reviews-test" / "metrics.json").read_text()))
    assert "sent to the Ray cluster at" in plain.log_path.read_text()


def test_a_search_sends_its_trials_through_ray(ray_env, tiny_model, reviews_dir, tmp_path):
    from test_search import TRIAL, config_file, search

    base = config_file(tmp_path, tiny_config(tiny_model, reviews_dir, **TRIAL))
    s = search("--config", base, "--param", "learning_rate=1e-7,5e-3", "--trials", "4", "--seed", "1")
    wait_for(lambda: s.status().get("state") in ("completed", "failed"), timeout=400, what="the search")
    assert s.status()["state"] == "completed", s.log_path.read_text()[-3000:]
    trials = [RunDir.for_id(f"{s.run_id}.t0{i}") for i in range(1, 5)]
    assert all(t.status()["ray_job"] and t.status()["state"] in ("completed", "pruned") for t in trials)
    sent = {(j.get("metadata") or {}).get("lab_run_id") for j in ray_jobs(ray_env.address)}
    assert {s.run_id, *(t.run_id for t in trials)} <= sent
    assert "trials at once: 2" in s.log_path.read_text()  # two 1-CPU trials fit the 2-CPU cluster


def test_a_run_bigger_than_any_node_is_refused_naming_the_largest(ray_env, tiny_model, reviews_dir, tmp_path, lab_home):
    cfg = tiny_config(tiny_model, reviews_dir, num_processes=3)
    (tmp_path / "big.json").write_text(json.dumps(cfg.to_dict()))
    out = run_cli("launch", "train", "--config", str(tmp_path / "big.json"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "asks for 3 CPU(s) on one node" in out.stderr and "its largest node" in out.stderr and "has 2" in out.stderr
    assert nothing_queued(lab_home)


def test_a_gpu_cluster_gives_a_run_one_gpu_per_process_and_refuses_more_than_a_node_has():
    from core.backends import RayCluster

    class TwoGpuNodes(RayCluster):  # the cluster's answer, as /api/cluster_status gives it for two 4-GPU nodes
        def nodes(self):
            return [{"ip": f"10.0.0.{i}", "head": i == 1, "total": {"CPU": 32.0, "GPU": 4.0}, "free": {}} for i in (1, 2)]

    cluster = TwoGpuNodes("http://head:8265")
    assert cluster.admit("train", {"num_processes": 4}) == {"GPU": 4.0, "CPU": 4.0}
    assert cluster.admit("search", {"base": {}}) == {}  # a search's worker only asks and tells
    assert cluster.slots(cluster.request_for(1)) == 8
    with pytest.raises(ValueError, match=r"asks for 8 GPU\(s\) on one node.*its largest node, 10.0.0.1, has 4"):
        cluster.admit("pipeline", {"source": {"num_processes": 8}, "target": {"num_processes": 1}})


def test_a_cluster_restarted_under_a_run_leaves_it_interrupted_and_resume_completes(ray_env, tiny_model,
                                                                                        reviews_dir, tmp_path):
    cfg = tiny_config(tiny_model, reviews_dir, max_train_samples=40, batch_size=1, epochs=2, eval_steps=20,
                      max_length=64)
    run = launch_paused("train", cfg, at_step=23)  # held past its checkpoint of step 20
    wait_for(lambda: held(run), timeout=240, what="a checkpoint")
    ray_env.crash()
    ray_env.start()  # restarted: it knows none of the jobs it ran before
    wait_for(lambda: state(run) == "interrupted", timeout=90, what="the run seen interrupted")
    assert "no longer knows job" in run.status()["error"]
    assert not psutil.pid_exists(run.status()["pid"])  # its worker ended too: no training for a lost cluster
    other = launch_paused("train", cfg, at_step=1)
    wait_for(lambda: held(other), timeout=120, what="the other run to start")
    other.update_status(host="another-node")
    out = run_cli("stop", other.run_id, "--timeout", "0")  # its worker is stopped through Ray, not by pid
    assert out.returncode == 0, out.stderr
    assert other.status()["state"] == "stopped"
    assert next(j["status"] for j in ray_jobs(ray_env.address) if j["submission_id"] == other.status()["ray_job"]) == "STOPPED"

    run.unpause()
    out = run_cli("resume", run.run_id)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: run.status().get("state") in ("completed", "failed", "interrupted"), timeout=300, what="resume")
    assert run.status()["state"] == "completed", run.log_path.read_text()[-3000:]
    steps = training_steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == run.status()["total_steps"]


def test_a_lost_job_on_another_node_is_interrupted_with_ray_s_reason(ray_env, lab_home):
    from core import jobs
    from core.runs import now, write_json_atomic

    run = RunDir.for_id("20260101-000000-lost-abcdef")
    run.path.mkdir(parents=True)
    run.write_config("train", {"model": "x", "dataset": "y"})
    write_json_atomic(run.status_path, {"state": "running", "created_at": now(), "queued_at": now(), "pid": 1,
                                        "host": "another-node", "ray_job": "never-sent-to-this-cluster",
                                        "ray_address": ray_env.address, "submitted_at": now()})
    assert jobs.reconcile() == [run.run_id]
    assert run.status()["state"] == "interrupted"
    assert "no longer knows job never-sent-to-this-cluster" in run.status()["error"]


def test_an_unreachable_cluster_queues_nothing_and_a_queued_run_waits_for_it_or_for_local(
        tiny_model, reviews_dir, tmp_path, lab_home, monkeypatch):
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    ray = {"SENTIMENT_LAB_BACKEND": "ray", "RAY_ADDRESS": address}
    (tmp_path / "c.json").write_text(json.dumps(tiny_config(tiny_model, reviews_dir).to_dict()))
    out = run_cli("launch", "train", "--config", str(tmp_path / "c.json"), env=ray)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert f"the Ray cluster at {address} cannot be reached" in out.stderr
    assert nothing_queued(lab_home)

    # A run queued while the cluster is down (queued earlier, locally): it stays queued, and says why.
    from core.jobs import create_run

    run = create_run("train", tiny_config(tiny_model, reviews_dir))
    out = run_cli("dispatch", env=ray)
    assert out.returncode == 2 and f"{address} cannot be reached" in out.stderr, out.stderr
    assert run.status()["state"] == "queued"
    # The local backend takes it.
    out = run_cli("dispatch", env={"SENTIMENT_LAB_BACKEND": "local"})
    assert out.returncode == 0, out.stderr
    wait_for(lambda: run.status().get("state") == "completed", timeout=180, what="the local backend to run it")
    assert not run.status().get("ray_job")


def test_without_ray_installed_the_ray_backend_says_what_to_install(tmp_path):
    code = "import sys; sys.modules['ray'] = None; from core.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "SENTIMENT_LAB_BACKEND": "ray", "RAY_ADDRESS": "http://127.0.0.1:1"}
    out = subprocess.run([sys.executable, "-c", code, "backend"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "make setup-ray" in out.stdout and len(out.stdout.strip().splitlines()) == 1
    out = subprocess.run([sys.executable, "-c", code, "launch", "train", "--preset", "offline-quick"], cwd=ROOT,
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "make setup-ray" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    env["SENTIMENT_LAB_BACKEND"] = "local"  # the local backend needs no Ray
    out = subprocess.run([sys.executable, "-c", code, "backend"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.startswith("backend: local")


def test_the_app_shows_the_cluster_and_sends_what_waited_for_it(ray_env, tiny_model, reviews_dir):
    from streamlit.testing.v1 import AppTest

    from core.jobs import create_run

    run = create_run("train", tiny_config(tiny_model, reviews_dir))  # queued while nothing sent it
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert any(f"Runs go to ray at {ray_env.address} (1 node(s); free:" in c.value and "of 2 CPUs" in c.value
               for c in at.sidebar.caption), [c.value for c in at.sidebar.caption]
    at.sidebar.button(key="send_queued").click().run()
    assert not at.exception
    wait_for(lambda: run.status().get("state") == "completed", timeout=180, what="the run sent from the app")
    assert run.status()["ray_job"]
