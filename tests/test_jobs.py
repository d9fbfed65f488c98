"""Background runs as real OS processes: launch, queue, kill -9, resume, index rebuild, 2 processes."""

import json
import os
import signal
import time

import pytest

from conftest import cli_here, held, launch_paused, run_cli, tiny_config
from core import jobs
from core.runs import RunDir, read_jsonl


def wait_for(predicate, timeout=120, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def launch_json(cfg, tmp_path, name="c.json", kind="train"):
    (tmp_path / name).write_text(json.dumps(cfg.to_dict()))
    out = cli_here("launch", kind, "--config", str(tmp_path / name), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_launch_returns_at_once_and_the_run_outlives_the_launcher(reviews_dir, tiny_model, tmp_path):
    started = time.time()
    info = launch_json(tiny_config(tiny_model, reviews_dir), tmp_path)
    assert set(info) == {"run_id", "run_dir"}
    assert time.time() - started < 30  # the launcher does not train
    status = jobs.wait(info["run_id"], timeout=180)
    assert status["state"] == "completed"
    assert status["pid"] != os.getpid() and status["host"]
    assert "test reviews" in RunDir.for_id(info["run_id"]).log_path.read_text()


def test_kill_9_is_reported_interrupted_and_resume_finishes(reviews_dir, tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, reviews_dir, max_train_samples=40, batch_size=1, epochs=2, eval_steps=20,
                      logging_steps=1, max_length=64)
    run = launch_paused("train", cfg, at_step=25)  # past the checkpoint of step 20
    wait_for(lambda: held(run), what="the run paused at step 25")
    assert run.status()["step"] == 25 and "checkpoint-20" in {p.name for p in run.checkpoints_dir.iterdir()}
    os.kill(run.status()["pid"], signal.SIGKILL)
    listed = wait_for(lambda: [r for r in json.loads(run_cli("runs", "--json").stdout)
                               if r["id"] == run.run_id and r["state"] == "interrupted"], timeout=30, what="interrupted")
    assert "ended without finishing" in listed[0]["error"]

    assert cli_here("unpause", run.run_id).returncode == 0
    out = cli_here("resume", run.run_id, "--json")
    assert out.returncode == 0, out.stderr
    assert jobs.wait(run.run_id, timeout=240)["state"] == "completed"
    steps = [r["step"] for r in read_jsonl(run.metrics_path) if "loss" in r]
    assert len(steps) == len(set(steps)) and set(steps) == set(range(1, 81))  # steps 21-25 once, from checkpoint-20
    assert run.has_model() and run.evals()


def test_two_launches_in_the_same_second_run_one_after_the_other(reviews_dir, tiny_model, tmp_path):
    a = jobs.launch("train", tiny_config(tiny_model, reviews_dir))
    b = jobs.launch("train", tiny_config(tiny_model, reviews_dir, seed=3))
    sa, sb = jobs.wait(a.run_id, 240), jobs.wait(b.run_id, 240)
    assert sa["state"] == sb["state"] == "completed"
    first, second = sorted([sa, sb], key=lambda s: s["started_at"])
    assert second["started_at"] >= first["ended_at"] - 1.0  # one at a time


def test_cancel_a_queued_run_and_stop_a_running_one(reviews_dir, tiny_model, tmp_path):
    a = launch_paused("train", tiny_config(tiny_model, reviews_dir), at_step=3)
    b = jobs.launch("train", tiny_config(tiny_model, reviews_dir))
    wait_for(lambda: held(a), what="first run training")
    assert b.status()["state"] == "queued"
    assert jobs.stop(b.run_id)["state"] == "cancelled"
    status = jobs.stop(a.run_id, timeout=60)
    assert status["state"] == "stopped"
    assert list(a.checkpoints_dir.glob("checkpoint-*"))


def test_the_index_is_rebuilt_from_the_folders(reviews_dir, tiny_model, lab_home):
    from core.training import train_run

    train_run(tiny_config(tiny_model, reviews_dir), RunDir.for_id("r-one"))
    assert [r["id"] for r in jobs.list_runs()] == ["r-one"]
    jobs.db_path().unlink()
    rows = jobs.list_runs()
    assert [(r["id"], r["state"]) for r in rows] == [("r-one", "completed")]
    jobs.db_path().write_bytes(b"this is not a database" * 100)
    assert [r["id"] for r in jobs.list_runs()] == ["r-one"]


def test_a_stale_running_badge_is_reconciled(lab_home):
    run = RunDir.for_id("ghost")
    run.path.mkdir(parents=True)
    (run.path / "config.json").write_text("{}")
    run.update_status(state="running", pid=999_999_9, host=os.uname().nodename, started_at=time.time())
    assert jobs.reconcile() == ["ghost"]
    assert run.status()["state"] == "interrupted"


def test_a_pipeline_s_progress_counts_the_stage_it_is_in(lab_home):
    """Its step counts finished stages (1 of 5); half-way through the next one it reads 30%, not 20%."""
    alive = dict(pid=os.getpid(), host=os.uname().nodename, started_at=time.time())
    for run_id, config, status in [
            ("p2", {"kind": "pipeline"}, dict(state="running", step=1, total_steps=5, stage="target")),
            ("p2.source", {"parent": "p2"}, dict(state="completed", step=60, total_steps=60)),
            ("p2.target", {"parent": "p2"}, dict(state="running", step=30, total_steps=60)),
            ("solo", {}, dict(state="running", step=15, total_steps=60))]:
        run = RunDir.for_id(run_id)
        run.path.mkdir(parents=True)
        (run.path / "config.json").write_text(json.dumps(config))
        run.update_status(**status, **alive)
    progress = {r["id"]: r["progress"] for r in jobs.list_runs()}
    assert progress == {"p2": 0.3, "p2.source": 1.0, "p2.target": 0.5, "solo": 0.25}
    listing = cli_here("runs").stdout.splitlines()
    assert [line.split()[3:5] for line in listing if line.startswith("p2 ")] == [["30%", "1/5"]]
    RunDir.for_id("p2").update_status(state="interrupted")  # no stage runs for it now: its finished stages only
    assert next(r for r in jobs.list_runs() if r["id"] == "p2")["progress"] == 0.2


def test_a_damaged_run_folder_is_listed_as_failed_and_kept(lab_home):
    import pytest

    damaged = RunDir.for_id("20260101-000000-damaged-aaaaaa")
    damaged.path.mkdir(parents=True)
    (damaged.path / "config.json").write_text('{"model": ')  # cut off mid-write by something else
    (damaged.path / "status.json").write_text('{"state": "completed"}')
    (damaged.path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
    nascent = RunDir.for_id("20260101-000001-nascent-bbbbbb").path
    nascent.mkdir()  # mkdir'd, config.json still being written (its temp file)
    (nascent / ".config.json.tmp123").write_text('{"mod')
    rows = {r["id"]: r for r in jobs.list_runs()}
    assert list(rows) == [damaged.run_id]  # the empty folder is not a run (yet)
    assert rows[damaged.run_id]["state"] == "failed"  # never "completed" on a config nobody can read
    assert rows[damaged.run_id]["error"].startswith("config.json is missing or not valid JSON")
    with pytest.raises(ValueError, match="cannot resume: its config.json is missing or not valid JSON"):
        jobs.resume(damaged.run_id)
    assert sorted(p.name for p in damaged.path.iterdir()) == ["config.json", "metrics.jsonl", "status.json"]
    jobs.delete(damaged.run_id)  # what the user can do about it
    assert jobs.list_runs() == [] and not damaged.path.exists()


def test_two_process_distributed_run_on_cpu(reviews_dir, tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, reviews_dir, num_processes=2, batch_size=4)
    info = launch_json(cfg, tmp_path)
    status = jobs.wait(info["run_id"], timeout=300)
    run = RunDir.for_id(info["run_id"])
    assert status["state"] == "completed", run.log_path.read_text()[-2000:]
    # 32 rows / (2 processes x 4) = 4 optimizer steps, logged once each by rank 0 alone.
    steps = [r["step"] for r in read_jsonl(run.metrics_path) if "loss" in r]
    assert steps == [1, 2, 3, 4]
    assert "--num_processes 2" in run.log_path.read_text()


def test_an_eval_job_scores_a_finished_run_on_other_data_in_the_background(reviews_dir, tiny_model, tmp_path):
    """`eval --background` (what the Runs page's Evaluate form queues): its own folder and worker process, the
    evaluated run's folder untouched; typos are refused before any folder exists; a wrong column fails the job
    with the column named, and Resume scores again once the data is right."""
    (tmp_path / "c.json").write_text(json.dumps(tiny_config(tiny_model, reviews_dir).to_dict()))
    trained = cli_here("train", "--config", str(tmp_path / "c.json"), "--json")
    assert trained.returncode == 0, trained.stderr
    model_run = RunDir.for_id(json.loads(trained.stdout)["run_id"])
    before = sorted(p.relative_to(model_run.path) for p in model_run.path.rglob("*"))
    other = tmp_path / "other.csv"
    other.write_text("text,sentiment\nA wonderful film,positive\nDull and long,negative\nLoved it,positive\n"
                     "Awful acting,negative\n   ,negative\n")

    out = run_cli("eval", "--run", model_run.run_id[:-2], "--data", str(other), "--label-field", "sentiment",
                  "--windows", "2", "--background", "--json")
    assert out.returncode == 0, out.stderr
    job = RunDir.for_id(json.loads(out.stdout)["run_id"])
    assert "-eval-" in job.run_id
    config = json.loads(job.config_path.read_text())
    assert job.job()["kind"] == "eval" and config["run"] == model_run.run_id  # the prefix was resolved
    status = jobs.wait(job.run_id, timeout=180)
    assert status["state"] == "completed", status.get("error")
    assert status["pid"] != os.getpid()
    assert status["metrics"]["n"] == 4 and status["metrics"]["skipped_empty"] == 1
    assert 0 <= status["metrics"]["accuracy"] <= 1
    saved = job.evals()
    assert len(saved) == 1 and next(iter(saved.values()))["windows"] == 2
    assert (job.evals_dir / next(iter(saved)) / "predictions.csv").read_text().count("\n") == 5  # header + 4
    assert "1 empty review skipped" in job.log_path.read_text()
    assert sorted(p.relative_to(model_run.path) for p in model_run.path.rglob("*")) == before
    listed = {r["id"]: r for r in json.loads(cli_here("runs", "--json").stdout)}
    assert listed[job.run_id]["kind"] == "eval" and listed[job.run_id]["model"] == model_run.run_id
    line = next(l for l in cli_here("runs").stdout.splitlines() if l.startswith(job.run_id))
    assert line.split()[1:3] == ["eval", "completed"] and line.endswith(f"{status['metrics']['accuracy']:.4f}")
    reported = json.loads(cli_here("results", job.run_id, "--json").stdout)  # the eval kind's own results
    assert reported["accuracy"] == status["metrics"]["accuracy"] and {"ece", "brier", "nll"} <= set(reported)

    # Refused before a folder exists: no such run, no such data, a run with no model.
    for args, message in ((["--run", "nope", "--data", str(other)], "error: run: no run"),
                          (["--run", model_run.run_id, "--data", str(tmp_path / "missing.csv")],
                           "error: dataset: no such file or folder"),
                          (["--run", job.run_id, "--data", str(other)], f"error: run: {job.run_id} has no trained model")):
        refused = cli_here("eval", *args, "--background")
        assert refused.returncode == 2 and refused.stderr.strip().startswith(message), refused.stderr
    assert len([r for r in jobs.list_runs() if r["kind"] == "eval"]) == 1

    # A column the file does not have: the job fails and says which; fixed, Resume scores it.
    bad = cli_here("eval", "--run", model_run.run_id, "--data", str(other), "--background", "--json")
    failed = RunDir.for_id(json.loads(bad.stdout)["run_id"])
    status = jobs.wait(failed.run_id, timeout=180)
    assert status["state"] == "failed" and status["error"].startswith("label_field: column 'label' is not in")
    other.write_text(other.read_text().replace("sentiment", "label"))
    jobs.resume(failed.run_id)
    assert jobs.wait(failed.run_id, timeout=180)["state"] == "completed"


def test_stopping_an_eval_job_is_at_once(reviews_dir, tiny_model, tmp_path):
    """Nothing to checkpoint: Stop signals the evaluation straight away rather than waiting for a step."""
    from core.training import train_run

    model_run = RunDir.for_id("20260101-000000-tiny-aaaaaa")
    train_run(tiny_config(tiny_model, reviews_dir), model_run)
    big = tmp_path / "big.csv"  # long enough that it is still scoring when stopped
    big.write_text("text,label\n" + "".join(f"{'A long and rather good film. ' * 60},1\n" for _ in range(4000)))
    info = json.loads(cli_here("eval", "--run", model_run.run_id, "--data", str(big), "--background", "--json").stdout)
    job = RunDir.for_id(info["run_id"])
    wait_for(lambda: job.status().get("phase", "") and job.status()["phase"].startswith("scoring"), what="scoring")
    started = time.time()
    status = jobs.stop(job.run_id, timeout=120)
    assert status["state"] == "stopped" and time.time() - started < 15
    assert not job.evals()  # nothing half-saved


def test_delete_refuses_what_another_job_still_needs(reviews_dir, tiny_model, tmp_path):
    """Deleting a finished run whose model a stopped run was started from (it could not resume) or a queued
    evaluation scores (it could not start) is refused, naming them, and so is deleting one stage of a pipeline;
    once the jobs that need it are gone, the run goes."""
    from core.config import EvalConfig
    from core.training import train_run

    base = RunDir.for_id("20260101-000000-base-aaaaaa")
    assert train_run(tiny_config(tiny_model, reviews_dir), base)["state"] == "completed"
    further = jobs.create_run("train", tiny_config(tiny_model, reviews_dir, init_from=base.run_id))
    further.update_status(state="stopped")
    by_folder = jobs.create_run("train", tiny_config(tiny_model, reviews_dir, init_from=str(base.model_dir)))
    scoring = jobs.create_run("eval", EvalConfig(run=base.run_id, dataset=str(reviews_dir)))  # queued, not dispatched
    with pytest.raises(ValueError) as refused:
        jobs.delete(base.run_id)
    message = str(refused.value)
    assert message.startswith("run: ") and f"still need the model of {base.run_id}" in message
    assert all(f"{r.run_id} (" in message for r in (further, by_folder, scoring)) and base.has_model()
    out = cli_here("delete", base.run_id)
    assert out.returncode == 2 and out.stderr.startswith("error: run: ") and base.has_model()

    pipeline_id = "20260101-000000-pipeline-bbbbbb"
    stage = jobs.create_run("train", tiny_config(tiny_model, reviews_dir), run_id=f"{pipeline_id}.source")
    stage.write_config("train", stage.config(), parent=pipeline_id, stage="source")
    with pytest.raises(ValueError, match=rf"belongs to {pipeline_id}, .*; delete {pipeline_id}"):
        jobs.delete(stage.run_id)  # a pipeline's table and resume read its stages' folders
    assert stage.path.exists()

    for job in (further, by_folder, scoring):
        jobs.delete(job.run_id) if job is further else jobs.stop(job.run_id)  # delete one, cancel the others
    jobs.delete(base.run_id)
    assert not base.path.exists()


def test_a_kind_registered_from_outside_core_launches_stops_resumes_and_reports(tmp_path):
    """core/kinds.py is the only place a kind lives: a toy kind from tests/support works through the CLI."""
    env = {"SENTIMENT_LAB_KINDS": "tests.support.toy_kind"}
    bad = run_cli("launch", "toy", "--set", "steps=0", env=env)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: steps: must be >= 1, got 0"
    assert "toy: count to N" in run_cli("launch", "--help", env=env).stdout
    out = run_cli("launch", "toy", "--set", "steps=400", "--set", "pause=0.03", "--json", env=env)
    assert out.returncode == 0, out.stderr
    run = RunDir.for_id(json.loads(out.stdout)["run_id"])
    wait_for(lambda: (run.status().get("step") or 0) >= 5, what="the toy counting")
    stopped = run_cli("stop", run.run_id, "--json", env=env)
    assert json.loads(stopped.stdout)["state"] == "stopped", stopped.stderr
    assert run_cli("resume", run.run_id, env=env).returncode == 0
    assert jobs.wait(run.run_id, timeout=120)["state"] == "completed"
    listed = {r["id"]: r for r in json.loads(run_cli("runs", "--json", env=env).stdout)}
    assert listed[run.run_id]["kind"] == "toy"
    results = json.loads(run_cli("results", run.run_id, "--json", env=env).stdout)
    assert results["steps"] == list(range(1, 401))  # each step once, across the stop and the resume
