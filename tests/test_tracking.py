"""MLflow mirroring: runs nested as they are in the lab, the same loss history as metrics.jsonl, resume without a step
twice, an unreachable server that never fails training, mlflow-sync's backfill, the switch, and the UI."""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from conftest import ROOT, held, launch_paused, run_cli, tiny_config, tiny_pipeline
from core import jobs
from core.runs import RunDir
from test_jobs import wait_for

ON = {"SENTIMENT_LAB_TRACKING": "mlflow"}


@pytest.fixture
def tracking(monkeypatch, lab_home):
    monkeypatch.setenv("SENTIMENT_LAB_TRACKING", "mlflow")
    return f"sqlite:///{lab_home / 'mlflow.db'}"


def mlflow_runs(uri):
    """Every MLflow run of the lab's experiment by its lab run id, read as a user of MLflow would."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    frame = mlflow.search_runs(experiment_names=["sentiment-transfer-lab"])
    return {row["tags.lab_run_id"]: row for _, row in frame.iterrows()}


def history(uri, mlflow_id, key):
    from mlflow.tracking import MlflowClient

    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(mlflow_id, key))


def same(mirrored, recorded):
    """MLflow's history of a metric is the run folder's: the same steps, the same values."""
    assert [s for s, _ in mirrored] == [s for s, _ in recorded] and mirrored
    assert [v for _, v in mirrored] == pytest.approx([v for _, v in recorded])


def jsonl_history(run, key):
    return sorted((r["step"], r[key]) for r in run.metrics() if key in r)


def test_a_pipeline_is_a_parent_run_with_its_stages_nested(reviews_dir, tiny_model, tmp_path, tracking):
    pcfg = tiny_pipeline(tmp_path, reviews_dir, tiny_model)
    (tmp_path / "pipe.json").write_text(json.dumps(pcfg.to_dict()))
    out = run_cli("pipeline", "--config", str(tmp_path / "pipe.json"), "--quiet", "--json")
    assert out.returncode == 0, out.stderr
    pipe = RunDir.for_id(json.loads(out.stdout)["pipeline_id"])
    runs = mlflow_runs(tracking)
    parent = runs[pipe.run_id]
    assert parent["status"] == "FINISHED" and parent["tags.kind"] == "pipeline"
    assert parent["params.source.learning_rate"] == str(pcfg.source.learning_rate)
    assert parent["metrics.target_finetuned"] == pytest.approx(pipe.status()["metrics"]["target_finetuned"])
    for stage in ("source", "target", "baseline"):
        run = pipe.stage(stage)
        row = runs[run.run_id]
        assert row["tags.mlflow.parentRunId"] == parent["run_id"] and row["tags.stage"] == stage
        assert row["tags.commit"] and row["params.learning_rate"] == str(pcfg.target.learning_rate if stage != "source"
                                                                            else pcfg.source.learning_rate)
        same(history(tracking, row["run_id"], "loss"), jsonl_history(run, "loss"))
        assert row["metrics.test_accuracy"] == pytest.approx(run.status()["metrics"]["test_accuracy"])
    from mlflow.tracking import MlflowClient

    files = {f.path for f in MlflowClient(tracking).list_artifacts(parent["run_id"])}
    assert {"results.md", "results.json"} <= files
    stage_files = MlflowClient(tracking).list_artifacts(runs[pipe.stage("source").run_id]["run_id"], "evals")
    assert stage_files  # each evaluation's metrics.json, its confusion matrix in it


def test_a_search_is_a_parent_run_with_its_trials_nested(reviews_dir, tiny_model, tmp_path, tracking):
    (tmp_path / "c.json").write_text(json.dumps(tiny_config(tiny_model, reviews_dir).to_dict()))
    out = run_cli("search", "--config", str(tmp_path / "c.json"), "--param", "learning_rate=1e-4,1e-3",
                  "--trials", "2", "--pruner", "none", "--json")
    assert out.returncode == 0, out.stderr
    search_id = json.loads(out.stdout)["run_id"]
    assert jobs.wait(search_id, timeout=300)["state"] == "completed"
    runs = wait_for(lambda: (r := mlflow_runs(tracking)) and r.get(search_id) is not None
                    and r[search_id]["status"] == "FINISHED" and r, what="the search's MLflow run finished")
    trials = [k for k in runs if k.startswith(f"{search_id}.t")]
    assert len(trials) == 2, list(runs)
    for t in trials:
        assert runs[t]["tags.mlflow.parentRunId"] == runs[search_id]["run_id"]
        same(history(tracking, runs[t]["run_id"], "loss"), jsonl_history(RunDir.for_id(t), "loss"))


def test_a_resumed_run_logs_into_the_same_mlflow_run_no_step_twice(reviews_dir, tiny_model, tmp_path, tracking,
                                                                  monkeypatch):
    monkeypatch.setenv("SENTIMENT_LAB_MIRROR_EVERY", "30")
    cfg = tiny_config(tiny_model, reviews_dir, max_train_samples=40, batch_size=1, epochs=2, eval_steps=20,
                      logging_steps=1, max_length=64, precision="fp32")
    run = launch_paused("train", cfg, at_step=26)  # steps past the checkpoint of step 20

    wait_for(lambda: held(run) and (run.path / "mlflow.json").exists(), what="the run mirrored and paused")
    os.kill(run.status()["pid"], signal.SIGKILL)  # before its mirror's next tick (every 30 s)
    wait_for(lambda: run.run_id in jobs.reconcile() or run.status()["state"] == "interrupted", what="interrupted")
    # No worker is left to send the tail: reconciling it did, to the last line the folder has.
    killed = mlflow_runs(tracking)[run.run_id]
    assert max(s for s, _ in history(tracking, killed["run_id"], "loss")) == max(s for s, _ in jsonl_history(run, "loss"))
    run.unpause()
    assert run_cli("resume", run.run_id).returncode == 0
    assert jobs.wait(run.run_id, timeout=300)["state"] == "completed"
    runs = wait_for(lambda: (r := mlflow_runs(tracking)) and r[run.run_id]["status"] == "FINISHED" and r,
                    what="the MLflow run finished")
    assert len([k for k in runs if k == run.run_id]) == 1
    steps = [s for s, _ in history(tracking, runs[run.run_id]["run_id"], "loss")]
    assert len(steps) == len(set(steps)) and set(steps) == {s for s, _ in jsonl_history(run, "loss")}


def test_an_unreachable_server_never_fails_training_and_sync_backfills(reviews_dir, tiny_model, tmp_path, lab_home):
    (tmp_path / "c.json").write_text(json.dumps(tiny_config(tiny_model, reviews_dir).to_dict()))
    down = {**ON, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}  # nothing listens on port 9
    out = run_cli("train", "--config", str(tmp_path / "c.json"), "--quiet", "--json", env=down)
    assert out.returncode == 0, out.stderr
    run = RunDir.for_id(json.loads(out.stdout)["run_id"])
    assert run.status()["state"] == "completed"
    warnings = [line for line in run.log_path.read_text().splitlines() if "MLflow tracking" in line]
    assert len(warnings) == 1 and "http://127.0.0.1:9" in warnings[0] and "mlflow-sync" in warnings[0]

    uri = f"sqlite:///{lab_home / 'mlflow.db'}"
    for attempt in range(2):  # twice: the second finds everything there and adds nothing
        out = run_cli("mlflow-sync", "--json", env=ON)
        assert out.returncode == 0, out.stderr
        assert run.run_id in json.loads(out.stdout)["synced"]
        mirrored = mlflow_runs(uri)
        assert list(mirrored) == [run.run_id] and mirrored[run.run_id]["status"] == "FINISHED"
        same(history(uri, mirrored[run.run_id]["run_id"], "loss"), jsonl_history(run, "loss"))


def test_the_switch_turns_mirroring_off(reviews_dir, tiny_model, tmp_path, lab_home, monkeypatch):
    from core.tracking import set_tracking, tracking_on

    monkeypatch.delenv("SENTIMENT_LAB_TRACKING")
    assert tracking_on()  # on by default
    set_tracking(False)  # the sidebar's switch
    assert not tracking_on()
    (tmp_path / "c.json").write_text(json.dumps(tiny_config(tiny_model, reviews_dir).to_dict()))
    env = {k: v for k, v in os.environ.items() if k != "SENTIMENT_LAB_TRACKING"}
    out = subprocess.run([sys.executable, "-m", "core", "train", "--config", str(tmp_path / "c.json"), "--quiet"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert not (lab_home / "mlflow.db").exists()
    set_tracking(True)
    assert tracking_on()


def test_the_mlflow_ui_answers_on_its_port(lab_home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "core", "mlflow-ui", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def answers():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    return r.status == 200 and b"MLflow" in r.read()
            except OSError:
                return False
        wait_for(answers, timeout=120, what="the MLflow UI")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
