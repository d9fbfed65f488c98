"""The data-efficiency curve: budgets checked against the data, every point trained and scored on the same rows,
kill -9 and resume without training a finished point again, the crossover, and the Transfer page's chart."""

import json
import os
import signal

import pytest

from conftest import cli_here, run_cli, tiny_pipeline
from core import jobs
from core.curve import crossover
from core.runs import RunDir
from test_jobs import wait_for


def summary(pairs):
    return [{"labels": n, "start": start, "mean": m} for n, t, b in pairs for start, m in (("transfer", t),
                                                                                        ("baseline", b))]


@pytest.mark.parametrize("pairs, labels, helps", [
    ([(100, 0.80, 0.70), (1000, 0.85, 0.80)], None, "all"),
    ([(100, 0.70, 0.80), (1000, 0.80, 0.85)], None, "none"),
    ([(100, 0.80, 0.70), (1000, 0.85, 0.86), (10000, 0.90, 0.91)], 810, "below"),  # +0.1 -> -0.01: near 1000
    ([(100, 0.80, 0.70), (1000, 0.80, 0.85), (10000, 0.91, 0.90)], None, "largest"),  # helps again at the top
])
def test_the_crossover_is_where_the_transfer_stops_helping(pairs, labels, helps):
    got = crossover(summary(pairs))
    assert got["helps"] == helps and got["labels"] == labels, got
    if labels:
        assert got["text"] == f"past about {labels:,} labels the transfer no longer helps"


def test_the_crossover_with_helps_again_counts_only_the_last_stretch():
    got = crossover(summary([(100, 0.8, 0.7), (300, 0.7, 0.8), (1000, 0.8, 0.7), (3000, 0.8, 0.9)]))
    assert got["helps"] == "below" and 1000 < got["labels"] < 3000


@pytest.mark.parametrize("labels, says", [("8,100", "labels: 100 is more than the target's training split holds"),
                                          ("8,many", "labels: 'many' is not a number of reviews")])
def test_a_budget_the_data_cannot_fill_is_refused_with_its_size(labels, says, reviews_dir, tiny_model, tmp_path,
                                                                 lab_home):
    pcfg = tiny_pipeline(tmp_path, reviews_dir, tiny_model)
    (tmp_path / "pipe.json").write_text(json.dumps(pcfg.to_dict()))
    out = cli_here("curve", "--config", str(tmp_path / "pipe.json"), "--labels", labels)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [f"error: {out.stderr.split('error: ')[1].strip()}"]
    assert says in out.stderr and ("(40 reviews: 20 negative, 20 positive" in out.stderr or "many" in labels)
    assert not (lab_home / "runs").exists() or not any((lab_home / "runs").iterdir())


def test_a_curve_trains_every_point_and_resumes_after_kill_9_without_retraining(reviews_dir, tiny_model, tmp_path):
    pcfg = tiny_pipeline(tmp_path, reviews_dir, tiny_model, batch_size=2, logging_steps=1, eval_steps=20)
    (tmp_path / "pipe.json").write_text(json.dumps(pcfg.to_dict()))
    out = run_cli("curve", "--config", str(tmp_path / "pipe.json"), "--labels", "8,16", "--seeds", "2",
                  "--min-steps", "60", "--json")
    assert out.returncode == 0, out.stderr
    job = RunDir.for_id(json.loads(out.stdout)["run_id"])

    def two_points_done_and_a_third_past_a_checkpoint():
        done = [s for s in (job.stage("n8-s0-transfer"), job.stage("n8-s0-baseline"))
                if s.status().get("state") == "completed"]
        third = job.stage("n8-s1-transfer")
        return len(done) == 2 and list(third.checkpoints_dir.glob("checkpoint-*")) and third.status().get("step", 0) > 22

    wait_for(two_points_done_and_a_third_past_a_checkpoint, timeout=240, what="two points and a third under way")
    finished = {name: job.stage(name).status()["ended_at"] for name in ("source", "n8-s0-transfer", "n8-s0-baseline")}
    os.kill(job.status()["pid"], signal.SIGKILL)
    wait_for(lambda: job.run_id in jobs.reconcile() or job.status()["state"] == "interrupted", what="interrupted")
    assert cli_here("resume", job.run_id).returncode == 0
    assert jobs.wait(job.run_id, timeout=400)["state"] == "completed"
    for name, ended in finished.items():  # trained once: the same ending, one training in its log
        assert job.stage(name).status()["ended_at"] == ended
        assert job.stage(name).log_path.read_text().count("] data: train ") == 1
    assert "resuming from checkpoint-" in job.stage("n8-s1-transfer").log_path.read_text()

    out = cli_here("results", job.run_id, "--json")
    res = json.loads(out.stdout)
    assert len(res["points"]) == 2 * 2 * 2 and res["zero_shot"] is not None and res["test"] == "target:test"
    assert {(p["budget"], p["seed"], p["start"]) for p in res["points"]} == {
        (b, s, start) for b in ("8", "16") for s in (0, 1) for start in ("transfer", "baseline")}
    assert {p["n"] for p in res["points"]} == {12}  # every point scored on the same 12 target test rows
    for p in res["points"]:
        cfg = RunDir.for_id(p["run_id"]).config()
        assert cfg["samples_per_class"] == int(p["budget"]) // 2 and cfg["seed"] == p["seed"]
        assert (cfg["init_from"] == job.stage("source").run_id) == (p["start"] == "transfer")
    assert [(r["labels"], r["start"], r["seeds"]) for r in res["summary"]] == [
        (8, "transfer", 2), (8, "baseline", 2), (16, "transfer", 2), (16, "baseline", 2)]
    assert json.loads((job.path / "results.json").read_text())["points"] == res["points"]
    text = cli_here("results", job.run_id).stdout
    assert "from the source model" in text and "transfer" in text


def test_a_last_gap_within_the_seeds_spread_is_said():
    rows = summary([(100, 0.83, 0.78), (24784, 0.9102, 0.9090)])
    for r in rows:
        r.update(min=r["mean"] - 0.0015, max=r["mean"] + 0.0015)
    got = crossover(rows)
    assert got["helps"] == "all" and got["text"] == ("the transfer helps at every budget measured (at 24,784 labels by "
                                                     "+0.12 points, within the seeds' spread of 0.30)")
