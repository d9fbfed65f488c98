"""Hyperparameter search: SPEC parsing, a search of real trial processes with pruning, kill -9 and resume, stop,
the transfer objective and a target-stage search, and several trials at once."""

import json
import os
import signal

import pytest

from conftest import cli_here, held, launch_paused, run_cli, tiny_config, tiny_pipeline
from core import jobs
from core.errors import ConfigError
from core.runs import RunDir
from core.paths import studies_url
from core.search import parse_spec, trial_runs
from test_jobs import wait_for

# Small trials that learn (validation 1.0) at 5e-3 and stay at chance at 1e-7: the median pruner then has
# something to prune, whichever order the seeded sampler draws them in.
TRIAL = dict(max_train_samples=None, validation_size=8, epochs=5, batch_size=8, eval_steps=5, logging_steps=1,
             warmup_ratio=0.0, precision="fp32")


def config_file(tmp_path, cfg, name="base.json"):
    (tmp_path / name).write_text(json.dumps(cfg.to_dict()))
    return str(tmp_path / name)


def search(*args, env=None):
    out = run_cli("search", *args, "--json", env=env)
    assert out.returncode == 0, out.stderr
    return RunDir.for_id(json.loads(out.stdout)["run_id"])


def paused_search(tiny_model, reviews_dir, at_step):
    """Two trials of 40 steps (a checkpoint every 10) that pause at `at_step`: each held running for the test."""
    from core.search import SearchConfig

    cfg = tiny_config(tiny_model, reviews_dir, **{**TRIAL, "epochs": 2, "batch_size": 2, "eval_steps": 10})
    return launch_paused("search", SearchConfig(base=cfg.to_dict(), space={"learning_rate": "1e-3,2e-3"}, trials=2,
                                                pruner="none"), at_step)


def study_of(search_id):
    import optuna

    return optuna.load_study(study_name=search_id, storage=studies_url())


@pytest.mark.parametrize("name, spec, kind", [
    ("learning_rate", "1e-5:3e-4:log", ("float", 1e-5, 3e-4, True)),
    ("warmup_ratio", "0.0:0.2", ("float", 0.0, 0.2, False)),
    ("epochs", "int:1:4", ("int", 1, 4, False)),
])
def test_a_spec_is_a_range(name, spec, kind):
    d = parse_spec(name, spec)
    assert (d.scale, d.low, d.high, d.log) == kind


def test_choices_take_the_field_s_type():
    assert parse_spec("batch_size", "8,16,32").choices == (8, 16, 32)
    assert parse_spec("scheduler", "linear,cosine").choices == ("linear", "cosine")


@pytest.mark.parametrize("name, spec, says", [
    ("learning_rate", "fast", "does not parse"),
    ("learning_rate", "1e-3:1e-5", "LOW is above HIGH"),
    ("learning_rate", "0:1e-3:log", "log range must stay above 0"),
    ("lr", "1e-5:1e-3", "not a setting"),
    ("batch_size", "8:32", "integer setting takes int:LOW:HIGH"),
    ("warmup_ratio", "0.0:1.5", "between 0 and 0.99"),
    ("dataset", "a,b", "not how"),
    ("batch_size", "16", "at least two choices"),
])
def test_a_bad_spec_is_named(name, spec, says):
    with pytest.raises(ConfigError, match=says) as info:
        parse_spec(name, spec)
    assert info.value.field == f"--param {name}"


@pytest.mark.parametrize("args, says", [
    (["--param", "learning_rate=1e-3:1e-5"], "--param learning_rate: '1e-3:1e-5': LOW is above HIGH"),
    (["--param", "nope=1:2"], "--param nope: not a setting"),
    (["--trials", "0"], "trials: must be >= 1"),
    (["--metric", "test_accuracy"], "metric: must be one of eval_accuracy, eval_f1, eval_loss, transfer"),
    (["--metric", "transfer"], "metric: transfer scores a pipeline's source stage"),
])
def test_bad_input_is_one_line_and_queues_nothing(args, says, reviews_dir, tiny_model, tmp_path, lab_home):
    base = config_file(tmp_path, tiny_config(tiny_model, reviews_dir))
    out = cli_here("search", "--config", base, *args)
    assert out.returncode == 2 and says in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (lab_home / "runs").exists() or not any((lab_home / "runs").iterdir())


def test_a_search_runs_its_trials_prunes_and_agrees_with_its_study(reviews_dir, tiny_model, tmp_path):
    base = config_file(tmp_path, tiny_config(tiny_model, reviews_dir, **TRIAL))
    s = search("--config", base, "--param", "learning_rate=1e-7,5e-3", "--trials", "4", "--seed", "1")
    assert jobs.wait(s.run_id, timeout=300)["state"] == "completed"

    out = cli_here("results", s.run_id, "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    study = {t.number: t for t in study_of(s.run_id).trials}
    assert [t["number"] for t in res["trials"]] == sorted(study) == [0, 1, 2, 3]
    for t in res["trials"]:
        assert t["state"] == study[t["number"]].state.name.lower()
        assert t["value"] == study[t["number"]].value
        assert RunDir.for_id(t["run_id"]).status()["state"] == {"complete": "completed", "pruned": "pruned"}[t["state"]]
    states = [t["state"] for t in res["trials"]]
    assert "pruned" in states and "complete" in states
    pruned = RunDir.for_id(next(t["run_id"] for t in res["trials"] if t["state"] == "pruned"))
    assert pruned.metrics() and not pruned.checkpoints_dir.exists()  # its curve kept, its checkpoints gone
    assert res["best"]["value"] == max(t["value"] for t in res["trials"] if t["state"] == "complete")
    assert res["best"]["params"] == {"learning_rate": 5e-3}

    # The best trial's settings as a config file that train takes.
    out = cli_here("presets", "--from-run", res["best"]["run_id"])
    assert out.returncode == 0 and json.loads(out.stdout)["learning_rate"] == 5e-3
    (tmp_path / "best.json").write_text(out.stdout)
    from core.config import load_config_file

    assert load_config_file(tmp_path / "best.json").learning_rate == 5e-3
    # Trials are listed under their search, by number.
    listed = [r["id"] for r in jobs.list_runs() if r["id"].startswith(s.run_id)]
    assert listed == [s.run_id] + [f"{s.run_id}.t0{i}" for i in range(1, 5)]
    # Deleting the search deletes its trials and its study.
    jobs.delete(s.run_id)
    assert not any(RunDir.for_id(i).path.exists() for i in listed)
    import optuna

    assert s.run_id not in [x.study_name for x in optuna.get_all_study_summaries(studies_url())]


def test_kill_9_of_a_trial_fails_it_and_kill_9_of_the_search_resumes_it(reviews_dir, tiny_model, tmp_path):
    """A trial's worker killed while the search runs: failed in the study, the search goes on. The search's worker
    killed with its trial: `resume` continues the same trial from its checkpoint; no trial is counted twice."""
    s = paused_search(tiny_model, reviews_dir, at_step=13)  # its trials hold past their checkpoint of step 10

    def trial_held(n):
        return lambda: held(t := RunDir.for_id(f"{s.run_id}.t0{n}")) and t.status()

    first = wait_for(trial_held(1), timeout=120, what="trial 1 past a checkpoint")
    os.kill(first["pid"], signal.SIGKILL)
    second = wait_for(trial_held(2), timeout=120, what="trial 2 past a checkpoint")
    assert RunDir.for_id(f"{s.run_id}.t01").status()["state"] == "interrupted"
    out = cli_here("resume", s.run_id, "--json")  # nothing to resume: the search went on by itself
    assert out.returncode == 0 and json.loads(out.stdout)["state"] == "running", out.stderr
    os.kill(s.status()["pid"], signal.SIGKILL)
    os.kill(second["pid"], signal.SIGKILL)
    wait_for(lambda: s.run_id in jobs.reconcile() or s.status()["state"] == "interrupted", timeout=30,
             what="the search reconciled")

    s.unpause()
    out = cli_here("resume", s.run_id, "--json")
    assert out.returncode == 0, out.stderr
    assert jobs.wait(s.run_id, timeout=300)["state"] == "completed"
    trials = study_of(s.run_id).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert [t.user_attrs["run_id"] for t in trials] == [r.run_id for r in trial_runs(s)]
    resumed = RunDir.for_id(f"{s.run_id}.t02")
    assert "resuming from checkpoint-" in resumed.log_path.read_text()
    steps = [r["step"] for r in resumed.metrics() if "loss" in r]
    assert len(steps) == len(set(steps))  # the resumed trial logged no step twice
    out = cli_here("resume", f"{s.run_id}.t01")
    assert out.returncode == 2 and "resume the search" in out.stderr


def test_stop_ends_the_running_trial_and_resume_finishes_the_search(reviews_dir, tiny_model, tmp_path):
    s = paused_search(tiny_model, reviews_dir, at_step=3)
    wait_for(lambda: held(RunDir.for_id(f"{s.run_id}.t01")), what="trial 1 training")
    out = cli_here("stop", s.run_id, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["state"] == "stopped", out.stdout + out.stderr
    t1 = RunDir.for_id(f"{s.run_id}.t01")
    assert t1.status()["state"] == "stopped" and list(t1.checkpoints_dir.glob("checkpoint-*"))
    assert not RunDir.for_id(f"{s.run_id}.t02").path.exists()  # no trial started after the stop

    s.unpause()
    assert cli_here("resume", s.run_id).returncode == 0
    assert jobs.wait(s.run_id, timeout=300)["state"] == "completed"
    assert [t.state.name for t in study_of(s.run_id).trials] == ["COMPLETE", "COMPLETE"]
    assert "resuming from checkpoint-" in t1.log_path.read_text()


def test_the_transfer_objective_and_trials_side_by_side(reviews_dir, tiny_model, tmp_path):
    pcfg = tiny_pipeline(tmp_path, reviews_dir, tiny_model)
    (tmp_path / "pipe.json").write_text(json.dumps(pcfg.to_dict()))
    s = search("--config", str(tmp_path / "pipe.json"), "--param", "learning_rate=1e-4:1e-2:log", "--trials", "2",
               "--metric", "transfer", "--transfer-rows", "10", "--pruner", "none",
               env={"SENTIMENT_LAB_MAX_CONCURRENT": "2"})
    assert jobs.wait(s.run_id, timeout=300)["state"] == "completed"
    trials = trial_runs(s)
    for t in trials:
        m = t.evals()["transfer"]
        assert m["dataset"] == "target:train[5 per label]" and m["n"] == 10  # the target's train split, never test
        assert study_of(s.run_id).trials[t.job()["trial"]].value == pytest.approx(m["accuracy"])
        assert t.config()["dataset"] == pcfg.source.dataset  # the source stage is what is searched
    a, b = (t.status() for t in trials)
    assert a["started_at"] < b["ended_at"] and b["started_at"] < a["ended_at"]  # two at once


def test_a_target_stage_search_trains_the_source_once(reviews_dir, tiny_model, tmp_path):
    pcfg = tiny_pipeline(tmp_path, reviews_dir, tiny_model)
    (tmp_path / "pipe.json").write_text(json.dumps(pcfg.to_dict()))
    s = search("--config", str(tmp_path / "pipe.json"), "--param", "learning_rate=1e-4,1e-3", "--trials", "2",
               "--stage", "target", "--pruner", "none")
    assert jobs.wait(s.run_id, timeout=300)["state"] == "completed"
    source = s.stage("source")
    assert source.status()["state"] == "completed" and source.has_model()
    for t in trial_runs(s):
        assert t.config()["init_from"] == source.run_id and t.config()["dataset"] == pcfg.target.dataset


def test_a_trial_without_eval_steps_is_evaluated_four_times_an_epoch_for_the_pruner(reviews_dir, tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, reviews_dir, epochs=2, batch_size=2, eval_steps=None)  # 32 rows: 16 steps an epoch
    s = search("--config", config_file(tmp_path, cfg), "--param", "learning_rate=1e-4,1e-3", "--trials", "1")
    assert jobs.wait(s.run_id, timeout=300)["state"] == "completed"
    trial = trial_runs(s)[0]
    assert sorted({m["step"] for m in trial.metrics() if "eval_accuracy" in m}) == [4, 8, 12, 16, 20, 24, 28, 32]
    # reported by quarter epoch, so that trials of other batch sizes line up for the pruner
    assert sorted(int(k) for k in study_of(s.run_id).trials[0].intermediate_values) == [1, 2, 3, 4, 5, 6, 7, 8]
