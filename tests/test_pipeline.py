import json

import pytest

from conftest import cli_here, run_cli, tiny_pipeline
from core.pipeline import ROW_NAMES, run_pipeline
from core.runs import RunDir


def test_pipeline_writes_the_comparison_table(tmp_path, reviews_dir, tiny_model):
    pcfg = tiny_pipeline(tmp_path, reviews_dir, tiny_model, max_train_samples=24, epochs=2, eval_max_length=16,
                         eval_windows=2)
    pipe = RunDir.for_id("p1")
    status = run_pipeline(pcfg, pipe)
    assert status["state"] == "completed"
    assert status.get("phase") is None  # a finished pipeline is not "evaluating" anything any more
    assert status["step"] == status["total_steps"] == 5  # its progress counts stages
    results = json.loads((pipe.path / "results.json").read_text())
    assert [r["name"] for r in results["rows"]] == list(ROW_NAMES)
    by = {r["name"]: r for r in results["rows"]}
    assert by["target_zero_shot"]["run_id"] == "p1.source" and by["target_finetuned"]["n"] == 12
    assert by["source_after_target"]["dataset"] == "reviews"
    assert f"stage target: completed (accuracy {by['target_finetuned']['accuracy']:.4f})" in pipe.log_path.read_text()
    # Each dataset is scored the same way in every row it appears in, whichever model is scored.
    assert {r["name"]: r["scored_as"] for r in results["rows"]} == {
        "source": "32 tokens head_tail", "source_after_target": "32 tokens head_tail",
        "target_zero_shot": "16 tokens x 2 windows", "target_finetuned": "16 tokens x 2 windows",
        "target_only_baseline": "16 tokens x 2 windows"}
    # Lineage: stage 2 started from stage 1, the baseline from the base model with stage 2's budget.
    t_cfg = json.loads(RunDir.for_id("p1.target").config_path.read_text())
    b_cfg = json.loads(RunDir.for_id("p1.baseline").config_path.read_text())
    assert t_cfg["init_from"] == "p1.source" and b_cfg["init_from"] is None
    assert RunDir.for_id("p1.target").job() == {"kind": "train", "parent": "p1", "stage": "target"}
    assert "parent" not in t_cfg and b_cfg["epochs"] == t_cfg["epochs"] == 2  # config.json: the settings alone
    assert "Target-only baseline" in (pipe.path / "results.md").read_text()
    # One job with its stages: `runs` lists the pipeline, then its stages in the order they ran.
    from core.jobs import list_runs

    listed = list_runs()
    assert [(r["id"], r["parent"]) for r in listed] == [
        ("p1", None), ("p1.source", "p1"), ("p1.target", "p1"), ("p1.baseline", "p1")]
    assert listed[0]["dataset"] == f"{pcfg.source.dataset} → {pcfg.target.dataset}"

    # `python -m core results`: the Transfer page from a terminal, reading only. "p" also matches the stages
    # (p1.source, ...): a pipeline's id prefix means the pipeline.
    written = (pipe.path / "results.json").stat().st_mtime_ns
    table = cli_here("results", "p", "--flipped", "3")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("# Transfer results: p1\n") and "| Target-only baseline | target:test |" in table.stdout
    as_json = json.loads(cli_here("results", "p1", "--json", "--flipped", "2").stdout)
    assert as_json["state"] == "completed" and [r["name"] for r in as_json["rows"]] == list(ROW_NAMES)
    row = as_json["rows"][2]  # every figure the table has (the calibration's too), none of its per-review data
    assert {k: by["target_finetuned"][k] for k in ("name", "run_id", "dataset", "split", "accuracy", "f1", "n", "ece",
                                                   "ece_uncalibrated", "brier", "scored_as")}.items() <= row.items()
    assert "predictions" not in row and "reliability" not in row
    assert len(as_json["flipped"]) == min(2, as_json["flipped_total"])
    assert (pipe.path / "results.json").stat().st_mtime_ns == written
    logs = cli_here("logs", "p1").stdout  # the pipeline's log, then each stage's
    assert logs.index("stage baseline: completed") < logs.index("\n== p1.source ==\n") < logs.index("\n== p1.baseline ==\n")
    followed = cli_here("logs", "p1", "-f").stdout.splitlines()  # a finished run: printed at once, stages prefixed
    assert any(line.startswith("target | [") and "test target:test: accuracy" in line for line in followed)
    stage = cli_here("results", "p1.target")
    assert stage.returncode == 2 and stage.stderr.startswith("error: run: p1.target is a train run, which has no results table")


def test_a_row_says_how_its_reviews_were_read():
    from core.pipeline import scored_as

    assert scored_as({"max_length": 128, "truncation": "head_tail", "windows": 1}) == "128 tokens head_tail"
    assert scored_as({"max_length": 112, "truncation": "head_tail", "windows": 2, "confidence": 0.9,
                      "windows_read": 1.6234}) == "112 tokens x up to 2 windows, stop at p 0.9 (1.62 read per review)"
    assert scored_as({}) == ""  # metrics written before scoring was recorded


def test_source_accuracy_is_also_reported_per_domain_before_and_after_target_training(tmp_path, tiny_model):
    """Amazon multi-domain's `domain` column: the source rows break down by domain, so forgetting shows where."""
    from conftest import review_frame
    from core.pipeline import forgetting_by_group

    source = tmp_path / "amazon-like"
    source.mkdir()
    for split, n in (("train", 48), ("test", 16)):
        frame = review_frame(n)
        frame["domain"] = ["books" if (i // 2) % 2 else "kitchen" for i in range(n)]  # both labels in each
        frame.to_parquet(source / f"{split}.parquet")
    pipe = RunDir.for_id("p3")
    pcfg = tiny_pipeline(tmp_path, source, tiny_model)
    pcfg.baseline = False  # not needed here
    assert run_pipeline(pcfg, pipe)["state"] == "completed"
    results = json.loads((pipe.path / "results.json").read_text())
    by = {r["name"]: r for r in results["rows"]}
    for name in ("source", "source_after_target"):
        groups = by[name]["by_group"]
        assert by[name]["group_field"] == "domain" and sorted(groups) == ["books", "kitchen"]
        assert sum(g["n"] for g in groups.values()) == by[name]["n"] == 16
        assert sum(g["accuracy"] * g["n"] for g in groups.values()) / 16 == pytest.approx(by[name]["accuracy"], abs=1e-3)
    assert by["target_zero_shot"]["by_group"] is None  # the IMDB-like target has no such column
    table = forgetting_by_group(results["rows"])
    assert [g["group"] for g in table] == ["books", "kitchen"]
    books = table[0]
    assert books["change"] == f"{(books['after'] - books['before']) * 100:+.2f}"
    assert "Source accuracy by domain, before and after target training" in (pipe.path / "results.md").read_text()


def test_a_row_scored_on_one_label_is_flagged_in_the_table():
    """The Hub's imdb test split is sorted by label: `target.max_eval_samples=2000` scores 2,000 negative reviews."""
    from core.pipeline import results_markdown, row_warnings

    rows = [{"name": "source", "dataset": "amazon_polarity", "split": "test", "accuracy": 0.9, "f1": 0.9, "n": 100,
             "confusion": [[45, 5], [5, 45]]},
            {"name": "target_zero_shot", "dataset": "imdb", "split": "test[:2000]", "accuracy": 0.8, "f1": 0.44,
             "n": 2000, "confusion": [[1600, 400], [0, 0]]}]
    (warning,) = row_warnings(rows)
    assert warning.endswith(": Target, zero-shot (imdb:test[:2000]: all 2000 negative).")
    assert f"**Note**: {warning}" in results_markdown({"pipeline_id": "p", "rows": rows, "wall_s": 1.0})
    assert row_warnings(rows[:1]) == [] and "Note" not in results_markdown({"pipeline_id": "p", "rows": rows[:1], "wall_s": 1})


def test_a_row_whose_model_gives_one_label_is_flagged_in_the_table():
    """A stage that learnt nothing (a baseline on too few reviews) answers one label: 0.5 is not a weak model's score."""
    from core.metrics import single_prediction
    from core.pipeline import results_markdown, row_warnings

    assert single_prediction([[0, 50], [0, 50]]) == "positive" and single_prediction([[50, 0], [50, 0]]) == "negative"
    assert single_prediction([[45, 5], [5, 45]]) is None
    assert single_prediction([[0, 50], [0, 0]]) is None  # one label in the data: single_label's case, not this
    rows = [{"name": "source", "dataset": "amazon_polarity", "split": "test", "accuracy": 0.9, "f1": 0.9, "n": 100,
             "confusion": [[45, 5], [5, 45]]},
            {"name": "target_only_baseline", "dataset": "imdb", "split": "test", "accuracy": 0.5, "f1": 0.33,
             "n": 100, "confusion": [[50, 0], [50, 0]]}]
    (warning,) = row_warnings(rows)
    assert warning.endswith(": Target-only baseline (all 100 negative).")
    assert f"**Note**: {warning}" in results_markdown({"pipeline_id": "p", "rows": rows, "wall_s": 1.0})
    assert row_warnings(rows[:1]) == []


def test_the_seed_preset_runs_by_its_hub_names_from_a_local_hub_cache(tmp_path, tiny_roberta):
    """`pipeline --preset seed` as a user with network runs it, sizes made small: FacebookAI/roberta-base,
    amazon_polarity and imdb by their Hub names, through the real from_pretrained and load_dataset, from a Hub
    cache laid out as a first download leaves it (here a tiny random RoBERTa and a few real reviews)."""
    import pandas as pd

    from conftest import DATA
    from tests.support.local_hub import lay_dataset, lay_model

    hub, cache = tmp_path / "hub", tmp_path / "datasets"
    lay_model(hub, "FacebookAI/roberta-base", tiny_roberta)
    amazon = {s: pd.read_parquet(DATA / "amazon_reviews_multidomain" / f"{s}.parquet").sample(64, random_state=0)
              [["label", "title", "content"]].reset_index(drop=True) for s in ("train", "test")}
    imdb = {s: pd.read_parquet(DATA / "imdb" / f"{s}.parquet").head(64).reset_index(drop=True) for s in ("train", "test")}
    lay_dataset(cache, "amazon_polarity", "amazon_polarity", amazon, tmp_path / "w-amazon")
    lay_dataset(cache, "imdb", "plain_text", imdb, tmp_path / "w-imdb")
    small = []
    for stage in ("source", "target"):
        small += [f"{stage}.{k}={v}" for k, v in dict(max_train_samples=32, max_eval_samples=16, validation_size=8,
                                                       max_length=32, eval_max_length=32, eval_steps="",
                                                       logging_steps=2, batch_size=8, eval_batch_size=16).items()]
    out = run_cli("pipeline", "--preset", "seed", *[a for s in small for a in ("--set", s)], "--json", "--quiet",
                  env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "HF_DATASETS_CACHE": str(cache)})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["state"] == "completed" and [r["name"] for r in result["rows"]] == list(ROW_NAMES)
    assert {r["dataset"] for r in result["rows"]} == {"amazon_polarity", "imdb"}
    pipe = RunDir.for_id(result["pipeline_id"])
    assert pipe.config()["source"]["model"] == "roberta-base"
    log = pipe.stage("source").log_path.read_text()
    assert "model: FacebookAI/roberta-base (" in log  # by its Hub name: offline, only the cache can have served it
