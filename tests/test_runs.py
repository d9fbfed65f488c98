import json

import pytest

from core.runs import RunDir, append_jsonl, new_run_id, read_json, read_jsonl, write_json_atomic


def test_atomic_json_and_tolerant_readers(tmp_path):
    p = tmp_path / "s.json"
    write_json_atomic(p, {"a": 1})
    assert read_json(p) == {"a": 1}
    p.write_text('{"a": ')  # what a crash mid-write would leave without the rename
    assert read_json(p, default={}) == {}
    assert not list(tmp_path.glob(".s.json.*"))


def test_jsonl_reader_skips_a_half_written_last_line(tmp_path):
    p = tmp_path / "m.jsonl"
    append_jsonl(p, {"step": 1})
    append_jsonl(p, {"step": 2})
    with open(p, "a") as fh:
        fh.write('{"step": 3, "lo')
    assert [r["step"] for r in read_jsonl(p)] == [1, 2]


def test_run_ids_are_unique_and_findable():
    ids = {new_run_id("x") for _ in range(50)}
    assert len(ids) == 50
    run = RunDir.for_id(sorted(ids)[0])
    run.path.mkdir(parents=True)
    (run.path / "config.json").write_text(json.dumps({}))
    assert RunDir.find(run.run_id[:-2]).run_id == run.run_id
    with pytest.raises(ValueError, match="^run: no run"):
        RunDir.find("nothing-here")
    with pytest.raises(ValueError, match="^run: .* is not a valid run id"):
        RunDir.for_id("../escape")


def test_compare_shows_what_each_run_reached_and_only_the_settings_that_differ(reviews_dir, tiny_model):
    from conftest import run_cli, tiny_config
    from core.runs import compare, transposed
    from core.training import train_run

    train_run(tiny_config(tiny_model, reviews_dir), RunDir.for_id("r-a"))
    train_run(tiny_config(tiny_model, reviews_dir, learning_rate=5e-4, max_length=24), RunDir.for_id("r-b"))
    rows, differ = compare(["r-a", "r-b"])
    assert differ == ["learning_rate", "max_length"]  # not the dozens of settings the two share
    assert [r["run"] for r in rows] == ["r-a", "r-b"] and [r["max_length"] for r in rows] == [32, 24]
    assert all(r["state"] == "completed" and 0 <= r["test accuracy"] <= 1 for r in rows)
    lines = dict(transposed(rows))
    assert lines["learning_rate"] == ["0.001", "0.0005"] and lines["state"] == ["completed", "completed"]

    out = run_cli("compare", "r-a", "r-b", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["settings_that_differ"] == ["learning_rate", "max_length"]
    text = run_cli("compare", "r-a", "r-b").stdout.splitlines()
    assert text[0].split() == ["run", "r-a", "r-b"] and ["max_length", "32", "24"] in [t.split() for t in text]
    one = run_cli("compare", "r-a")
    assert one.returncode == 2 and one.stderr.strip() == "error: runs: give at least two runs to compare"
