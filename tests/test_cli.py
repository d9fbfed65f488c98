"""The command line as a user runs it: subprocesses, exit codes, one-line errors, JSON output."""

import json
import re

import pytest

from conftest import ROOT, cli_here, run_cli, tiny_config

COMMANDS = ["train", "eval", "predict", "pipeline", "runs", "launch", "stop", "resume", "logs", "presets", "results"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    out = cli_here(command, "--help")
    assert out.returncode == 0 and "usage:" in out.stdout


@pytest.mark.parametrize("command", ["train", "pipeline", "launch"])
def test_set_help_names_every_field_it_takes(command):
    import dataclasses

    from core.config import RunConfig

    help_text = cli_here(command, "--help").stdout
    for f in dataclasses.fields(RunConfig):  # each field once, with its help from the schema
        assert help_text.count(f"\n  {f.name} (default: ") == 1, f.name
        assert " ".join(f.metadata["help"].split()[:4]) in " ".join(help_text.split()), f.name


def test_the_top_level_help_lists_the_users_commands_only():
    out = cli_here("--help")
    assert out.returncode == 0
    listed = [line.split()[0] for line in out.stdout.splitlines() if line.startswith("    ") and line.split()]
    assert all(listed.count(c) == 1 for c in COMMANDS + ["compare", "delete"])  # each listed once
    assert "_dispatch" not in out.stdout and "_train_rank" not in out.stdout  # the job system's own commands
    typo = cli_here("result")
    assert typo.returncode == 2 and "invalid choice: 'result' (choose from 'train', " in typo.stderr
    assert "'results', " in typo.stderr and "_dispatch" not in typo.stderr and "_work" not in typo.stderr


@pytest.mark.parametrize("args, message", [
    (["--set", "learning_rate=-0.001"], "error: learning_rate: must be > 0"),
    (["--set", "epochs=0"], "error: epochs: must be > 0"),
    (["--set", "model=nobody/no-such-model"], "error: model: 'nobody/no-such-model' is not a local folder or cached, and the Hugging Face Hub cannot be reached"),
    (["--set", "model=minilm-offline", "--set", "dataset=./no/such/folder"], "error: dataset: no such file or folder"),
    (["--set", "model=minilm-offline", "--set", "dataset=amazon_polarity"], "error: dataset: 'amazon_polarity' is not a local file or folder, and the Hugging Face Hub cannot be reached"),
    (["--set", "target.epochs=2"], "error: target.epochs: target.* fields are for pipelines"),
    (["--set", "epochs"], "error: --set: expected FIELD=VALUE"),
])
def test_bad_input_is_one_clear_line_and_leaves_no_run(args, message, lab_home):
    out = cli_here("train", *args)
    assert out.returncode == 2
    assert out.stderr.strip().startswith(message) and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    runs = json.loads(cli_here("runs", "--json").stdout)
    assert runs == []


def test_corrupt_config_file(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    out = cli_here("train", "--config", str(bad))
    assert out.returncode == 2 and out.stderr.startswith("error: config:")


def test_train_eval_predict_round_trip(reviews_dir, tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, reviews_dir)
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    out = cli_here("train", "--config", str(tmp_path / "c.json"), "--set", "seed=7", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["state"] == "completed" and json.loads((reviews_dir.parent / "lab" / "runs" / result["run_id"] / "config.json").read_text())["seed"] == 7
    run_id = result["run_id"]

    ev = cli_here("eval", "--run", run_id, "--data", str(reviews_dir / "test.parquet"), "--text-fields", "title,content", "--json")
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads(ev.stdout)
    assert set(metrics) >= {"accuracy", "f1", "n"} and metrics["n"] == 16 and metrics["windows"] == 1
    assert {"ece", "brier", "nll", "temperature", "confusion"} <= set(metrics)  # every figure the evaluation computed
    windowed = cli_here("eval", "--run", run_id, "--data", str(reviews_dir / "test.parquet"), "--windows", "3",
                       "--max-length", "8", "--json")
    assert windowed.returncode == 0 and json.loads(windowed.stdout)["windows"] == 3, windowed.stderr
    sure = cli_here("eval", "--run", run_id, "--data", str(reviews_dir / "test.parquet"), "--windows", "3",
                   "--max-length", "8", "--confidence", "0.5", "--json")  # every review is "sure" after one window
    assert sure.returncode == 0 and json.loads(sure.stdout)["windows_read"] == 1.0, sure.stderr
    over = cli_here("eval", "--run", run_id, "--data", str(reviews_dir / "test.parquet"), "--confidence", "1.5")
    assert over.returncode == 2 and over.stderr.strip() == "error: confidence: must be between 0.5 and 1.0, got 1.5"
    zero = cli_here("eval", "--run", run_id, "--data", str(reviews_dir / "test.parquet"), "--windows", "0")
    assert zero.returncode == 2 and zero.stderr.strip() == "error: windows: must be between 1 and 32, got 0"

    # Accuracy per value of a column: the bundled reviews from other sources, by source.
    by = cli_here("eval", "--run", run_id, "--data", "core/other_sources.csv", "--by", "source", "--json")
    assert by.returncode == 0, by.stderr
    scored = json.loads(by.stdout)
    groups = scored["by"]["source"]
    assert sorted(groups) == ["airline", "app", "game", "hotel", "music", "restaurant"] and scored["n"] == 60
    assert all(g["n"] == 10 for g in groups.values())
    assert sum(g["accuracy"] * g["n"] for g in groups.values()) == pytest.approx(scored["accuracy"] * 60)
    no_column = cli_here("eval", "--run", run_id, "--data", "core/other_sources.csv", "--by", "domain")
    assert no_column.returncode == 2 and no_column.stderr.strip().startswith("error: by: column 'domain' is not in")

    pred = cli_here("predict", "--run", run_id, "--json", input="Great film\n\nAwful film\n")
    rows = json.loads(pred.stdout)
    assert len(rows) == 2 and all(r["label"] in ("negative", "positive") and 0.5 <= r["probability"] <= 1 for r in rows)
    explained = json.loads(cli_here("predict", "--run", run_id, "--explain", "--json", "A slow but lovely film").stdout)
    assert [w for w, _ in explained[0]["words"]] == ["A", "slow", "but", "lovely", "film"]
    top = cli_here("predict", "--run", run_id, "--explain", "2", "A slow but lovely film").stdout.splitlines()
    assert len(top) == 2 and len(top[1].split()) == 4  # the review's line, then its 2 words with their push

    # Empty reviews in a file are left out of the score, and the user is told which rows.
    holes = reviews_dir.parent / "holes.csv"
    holes.write_text('text,label\n"   ",1\nA fine film,1\n,0\nDull and long,0\n')
    scored = cli_here("eval", "--run", run_id, "--data", str(holes), "--json")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["n"] == 2 and json.loads(scored.stdout)["skipped_empty"] == 2
    assert "note: 2 empty reviews skipped in holes.csv:test (rows 0, 2)" in scored.stderr
    # A sample of one label (the first rows of a split sorted by label) is scored, and the user told what it means.
    ordered = reviews_dir.parent / "sorted.csv"
    ordered.write_text("text,label\nLoved it,1\nA gem,1\nSo good,1\nAwful,0\nDire,0\nDreadful,0\n")
    one = cli_here("eval", "--run", run_id, "--data", str(ordered), "--max-samples", "3", "--json")
    assert one.returncode == 0 and json.loads(one.stdout)["n"] == 3, one.stderr
    assert ("note: all 3 reviews in sorted.csv:test[:3] are positive: the accuracy says how often the model gives that "
            "label (the first rows of a split sorted by label? --per-class N draws a balanced sample)") in one.stderr
    balanced = cli_here("eval", "--run", run_id, "--data", str(ordered), "--per-class", "2", "--json")
    assert balanced.returncode == 0 and "note: all" not in balanced.stderr, balanced.stderr
    scored_balanced = json.loads(balanced.stdout)
    assert scored_balanced["n"] == 4 and scored_balanced["dataset"] == "sorted.csv:test[2 per label]"
    assert [sum(row) for row in scored_balanced["confusion"]] == [2, 2]  # two reviews of each label
    both = cli_here("eval", "--run", run_id, "--data", str(ordered), "--per-class", "2", "--max-samples", "3")
    assert both.returncode == 2 and both.stderr.strip() == (
        "error: samples_per_class: set either max_samples or samples_per_class, not both")
    assert "note: all" not in scored.stderr

    empty = cli_here("predict", "--run", run_id, "   ")
    assert empty.returncode == 2 and empty.stderr.strip() == "error: review: is empty"
    missing = cli_here("eval", "--run", run_id, "--data", str(reviews_dir / "test.parquet"), "--label-field", "stars")
    assert missing.returncode == 2 and "label_field: column 'stars' is not in" in missing.stderr

    listed = json.loads(cli_here("runs", "--json").stdout)
    assert [r["id"] for r in listed] == [run_id] and listed[0]["state"] == "completed"


def test_a_one_megabyte_review_is_answered(reviews_dir, tiny_model):
    from core.runs import RunDir
    from core.training import train_run

    run = RunDir.for_id("big-review")
    train_run(tiny_config(tiny_model, reviews_dir), run)
    out = cli_here("predict", "--run", str(run.path), "--json", input="wonderful " * 105_000 + "\n")  # ~1 MB
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["label"] in ("negative", "positive")


def test_a_half_written_run_folder_is_listed_not_fatal(lab_home):
    folder = lab_home / "runs" / "half-written"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"kind": "train", "model": "x"}))
    (folder / "status.json").write_text('{"state": "runn')
    (lab_home / "runs" / "no-config-yet").mkdir()
    out = cli_here("runs", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["id"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"half-written"} and "unreadable" in rows["half-written"]["error"]


def test_results_json_keeps_stdout_one_object_and_says_the_tables_warnings_on_stderr(lab_home):
    """`results --json` (and `pipeline --json`) print one object; what a reader must know about the rows (one label
    in the data, one label from the model) goes to stderr, as results.md has it for the table printed as text."""
    from core.runs import RunDir, write_json_atomic

    pipe = RunDir.for_id("20260101-000000-pipeline-ffffff")
    pipe.path.mkdir(parents=True)
    write_json_atomic(pipe.config_path, {"kind": "pipeline"})
    pipe.update_status(state="completed", step=5, total_steps=5)
    write_json_atomic(pipe.path / "results.json", {"pipeline_id": pipe.run_id, "wall_s": 1.0, "rows": [
        {"name": "source", "run_id": "s", "dataset": "amazon_polarity", "split": "test", "accuracy": 0.9, "f1": 0.9,
         "n": 100, "confusion": [[45, 5], [5, 45]]},
        {"name": "target_only_baseline", "run_id": "b", "dataset": "imdb", "split": "test", "accuracy": 0.5,
         "f1": 0.33, "n": 200, "confusion": [[0, 100], [0, 100]]}]})
    out = cli_here("results", pipe.run_id, "--json")
    assert out.returncode == 0, out.stderr
    assert [r["name"] for r in json.loads(out.stdout)["rows"]] == ["source", "target_only_baseline"]
    assert out.stderr.startswith("note: A model that gives every review the same label has not learnt to tell them "
                                 "apart") and out.stderr.rstrip().endswith("Target-only baseline (all 200 positive).")
    text = cli_here("results", pipe.run_id)
    assert "**Note**: A model that gives every review the same label" in text.stdout and not text.stderr


def test_a_presets_every_field_prints_as_a_config_file_the_commands_take(tmp_path):
    from core.config import load_config_file, load_preset

    out = cli_here("presets", "offline-quick")
    assert out.returncode == 0, out.stderr
    (tmp_path / "mine.json").write_text(out.stdout)  # `presets NAME > mine.json`, edit, `--config mine.json`
    assert load_config_file(str(tmp_path / "mine.json")).to_dict() == load_preset("offline-quick").to_dict()
    unknown = cli_here("presets", "nope")
    assert unknown.returncode == 2 and unknown.stderr.strip().startswith("error: preset: unknown preset 'nope'")


def test_a_foreground_pipeline_shows_its_stages_moving_on_stderr(tmp_path, reviews_dir, tiny_model):
    """Piped (not a terminal): each stage's start and figure as log lines, and what is being done now every
    SENTIMENT_LAB_PROGRESS_EVERY seconds (30 by default); stdout stays one JSON object; --quiet says nothing."""
    from conftest import tiny_pipeline

    config = tmp_path / "pipeline.json"
    config.write_text(json.dumps(tiny_pipeline(tmp_path, reviews_dir, tiny_model, epochs=3).to_dict()))
    out = run_cli("pipeline", "--config", str(config), "--json", "--run-id", "loud",
                  env={"SENTIMENT_LAB_PROGRESS_EVERY": "0.2"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["state"] == "completed"
    for stage in ("source", "target", "baseline"):
        assert f"loud: stage {stage}: started" in out.stderr
        assert re.search(rf"loud: stage {stage}: completed \(accuracy 0\.\d{{4}}\)", out.stderr)
    assert re.search(r"\] loud\.source: step \d+/\d+ \(epoch", out.stderr)  # the heartbeat
    assert "%|" not in out.stderr  # no progress bar in a pipe
    quiet = run_cli("pipeline", "--config", str(config), "--json", "--quiet", "--run-id", "hush")
    assert quiet.returncode == 0 and json.loads(quiet.stdout)["state"] == "completed"
    assert not re.search(r"^\[\d\d:\d\d:\d\d\] ", quiet.stderr, re.M)  # no log line, no heartbeat


def test_a_foreground_run_on_a_terminal_gets_a_progress_bar(tmp_path, reviews_dir, tiny_model):
    import os
    import pty
    import subprocess
    import sys

    config = tmp_path / "run.json"
    config.write_text(json.dumps(tiny_config(tiny_model, reviews_dir, epochs=2).to_dict()))
    primary, secondary = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal 120 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "core", "train", "--config", str(config), "--run-id", "tty"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=secondary, env=dict(os.environ))
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the command closed the terminal: it has ended
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=300) == 0
    text = seen.decode("utf-8", "replace")
    assert "%|" in text and "tty: data: train" in text  # the Trainer's bar, and the run's log lines
