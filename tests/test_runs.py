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
