import json
import os

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
    outside = run.path.parent.parent / "outside"  # a run-like folder beside runs/, not in it
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    for hostile in ("../escape", "../outside", "a/b", "x\0y", "x..y", "..", "/etc", str(outside), "a" * 300, ""):
        with pytest.raises(ValueError, match="^run: no (such )?run"):
            RunDir.find(hostile)
    assert RunDir.find(str(run.path)).run_id == run.run_id  # a path to a folder of this lab's is one of its runs


def test_compare_shows_what_each_run_reached_and_only_the_settings_that_differ(reviews_dir, tiny_model):
    from conftest import cli_here, tiny_config
    from core.compare import compare, transposed
    from core.training import train_run

    train_run(tiny_config(tiny_model, reviews_dir), RunDir.for_id("r-a"))
    train_run(tiny_config(tiny_model, reviews_dir, learning_rate=5e-4, max_length=24), RunDir.for_id("r-b"))
    rows, differ = compare(["r-a", "r-b"])
    assert differ == ["learning_rate", "max_length"]  # not the dozens of settings the two share
    assert [r["run"] for r in rows] == ["r-a", "r-b"] and [r["max_length"] for r in rows] == [32, 24]
    assert all(r["state"] == "completed" and 0 <= r["test accuracy"] <= 1 for r in rows)
    lines = dict(transposed(rows))
    assert lines["learning_rate"] == ["0.001", "0.0005"] and lines["state"] == ["completed", "completed"]

    out = cli_here("compare", "r-a", "r-b", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["settings_that_differ"] == ["learning_rate", "max_length"]
    text = cli_here("compare", "r-a", "r-b").stdout.splitlines()
    assert text[0].split() == ["run", "r-a", "r-b"] and ["max_length", "32", "24"] in [t.split() for t in text]
    one = cli_here("compare", "r-a")
    assert one.returncode == 2 and one.stderr.strip() == "error: runs: give at least two runs to compare"


def test_metrics_tail_reads_only_what_was_appended_and_rereads_a_rewritten_file(tmp_path):
    from core.runs import MetricsTail

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"loss": 1.0 / s, "step": s}) + "\n" for s in range(1, 6)))
    assert list(MetricsTail.frame(path)["step"]) == [1, 2, 3, 4, 5]
    with open(path, "r+") as fh:  # an earlier line changed in place: a tail does not read it again
        fh.write(json.dumps({"loss": 9.0, "step": 1})[:len(json.dumps({"loss": 1.0, "step": 1}))])
    with open(path, "a") as fh:
        fh.write(json.dumps({"loss": 0.1, "step": 6}) + '\n{"loss": 0.09, "st')  # the writer mid-line
    frame = MetricsTail.frame(path)
    assert list(frame["step"]) == [1, 2, 3, 4, 5, 6] and frame["loss"].iloc[0] == 1.0
    with open(path, "a") as fh:
        fh.write('ep": 7}\n')
    assert list(MetricsTail.frame(path)["step"]) == [1, 2, 3, 4, 5, 6, 7]
    # resume rewinds the log (a new, shorter file): read again from the start
    tmp = tmp_path / "m.tmp"
    tmp.write_text("".join(json.dumps({"loss": 0.5, "step": s}) + "\n" for s in (1, 2)))
    os.replace(tmp, path)
    assert list(MetricsTail.frame(path)["step"]) == [1, 2]
    path.unlink()
    assert MetricsTail.frame(path).empty


def test_a_long_curve_is_thinned_to_its_shape():
    import numpy as np
    import pandas as pd

    from pages.common import thinned

    loss = np.exp(-np.arange(100_000) / 20_000) + 0.01 * np.sin(np.arange(100_000))
    loss[54_321] = 7.5  # a spike a stride would miss
    frame = pd.DataFrame({"step": np.arange(1, 100_001), "loss": loss})
    thin = thinned(frame, "loss", points=2000)
    assert len(thin) <= 2002 and thin["step"].is_monotonic_increasing
    assert thin["step"].iloc[0] == 1 and thin["step"].iloc[-1] == 100_000
    assert thin["loss"].max() == 7.5 and thin["loss"].min() == frame["loss"].min()
    assert thinned(frame.head(50), "loss") is not None and len(thinned(frame.head(50), "loss")) == 50
