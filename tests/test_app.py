"""Every page through streamlit.testing's AppTest, against a real (tiny) run in a private lab folder."""

import ast
import json
import os

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, tiny_config
from core.training import train_run
from core.runs import RunDir

PAGES = ["pages/overview.py", "pages/train.py", "pages/runs.py", "pages/search.py", "pages/transfer.py",
         "pages/try.py"]


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    if page:
        at.switch_page(page).run()
    return at


@pytest.fixture
def finished_run(built_once, shared_reviews, tiny_model):
    def build():
        run = RunDir.for_id("20260101-000000-tiny-aaaaaa")
        train_run(tiny_config(tiny_model, shared_reviews), run)
        return run.run_id

    return built_once("finished_run", build)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_loads_empty(page):
    at = app(page)
    assert not at.exception, at.exception


@pytest.mark.parametrize("page", PAGES)
def test_every_page_loads_with_a_run(page, finished_run):
    at = app(page)
    assert not at.exception, at.exception


def test_runs_page_shows_the_runs_curves_and_status(finished_run):
    at = app("pages/runs.py")
    assert finished_run.run_id in at.multiselect(key="runs_selected").value
    assert len(at.get("plotly_chart")) == 6  # five curves, and the test split's reliability diagram
    assert any(finished_run.run_id in str(m.value) and "✅" in str(m.value) for m in at.markdown)
    assert "step 4/4" in str(at.get("progress")[0].proto)
    assert any("Validation is scored once per epoch unless `eval_steps` is set" in c.value for c in at.caption)
    table = at.dataframe[0].value  # the runs table: progress in whole percent, shown as "100%"
    assert table.loc[table["run"] == finished_run.run_id, "progress"].tolist() == [100]


def test_a_finished_runs_model_comes_with_code_that_uses_it_outside_the_lab(finished_run):
    import subprocess
    import sys

    at = app("pages/runs.py")
    assert not at.exception, at.exception
    snippet = next(c.value for c in at.code if "pipeline(" in c.value)
    assert str(finished_run.model_dir) in snippet
    out = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    answers = ast.literal_eval(out.stdout.strip())
    assert len(answers) == 2 and all(a["label"] in ("negative", "positive") for a in answers)


def test_runs_page_puts_two_runs_side_by_side(finished_run, reviews_dir, tiny_model):
    other = RunDir.for_id("20260101-000001-tiny-bbbbbb")
    train_run(tiny_config(tiny_model, reviews_dir, epochs=2), other)
    at = app("pages/runs.py")
    at.multiselect(key="runs_selected").set_value([finished_run.run_id, other.run_id]).run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if list(d.value.columns) == [finished_run.run_id, other.run_id])
    assert table.loc["epochs"].tolist() == ["1", "2"] and "learning_rate" not in table.index
    assert not any("scored once per epoch" in c.value for c in at.caption)  # the 2-epoch run has a curve
    # each row of buttons says whose it is
    assert sorted(popover_labels(at.main)) == sorted(f"🗑 Delete {r.split('-', 2)[-1]}"
                                                     for r in (finished_run.run_id, other.run_id))


def popover_labels(node) -> list[str]:
    """The labels of the popovers (blocks, which AppTest has no accessor for) under `node`."""
    proto = getattr(node, "proto", None)
    own = [proto.popover.label] if type(proto).__name__ == "Block" and proto.WhichOneof("type") == "popover" else []
    return own + [label for child in getattr(node, "children", {}).values() for label in popover_labels(child)]


def test_runs_page_refuses_to_delete_a_model_another_run_needs(finished_run, reviews_dir, tiny_model):
    from core import jobs

    further = jobs.create_run("train", tiny_config(tiny_model, reviews_dir, init_from=finished_run.run_id))
    further.update_status(state="stopped")  # it resumes from its checkpoint, on top of finished_run's model
    at = app("pages/runs.py")
    at.multiselect(key="runs_selected").set_value([finished_run.run_id]).run()
    at.button(key=f"delete_{finished_run.run_id}").click().run()
    assert not at.exception, at.exception
    assert any(f"{further.run_id} (stopped) still need the model of {finished_run.run_id}" in e.value for e in at.error)
    assert finished_run.has_model()


def test_runs_page_shows_a_damaged_folder_without_a_traceback(lab_home):
    folder = lab_home / "runs" / "20260101-000000-damaged-aaaaaa"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model": ')
    (folder / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    at = app("pages/runs.py")
    assert not at.exception, at.exception
    assert any("config.json is missing or not valid JSON" in e.value for e in at.error)
    assert not [b for b in at.button if b.key and b.key.startswith("resume_")]  # nothing to resume from
    assert '{"model": ' in [c.value for c in at.code]  # the damaged file, shown as it is


def test_try_page_answers_and_rejects_empty_and_huge_reviews(finished_run):
    at = app("pages/try.py")
    at.text_area(key="try_text").input("An absolutely wonderful, moving film.")
    at.button(key="try_go").click().run()
    assert not at.error and len(at.metric) == 1
    assert at.metric[0].label in ("negative", "positive") and at.metric[0].value.endswith("%")

    at.text_area(key="try_text").input("   ")
    at.button(key="try_go").click().run()
    assert at.error and "review: is empty" in at.error[0].value

    at.text_area(key="try_text").input("good " * 20_000)  # 100,000 characters: answered, not refused
    at.button(key="try_go").click().run()
    assert not at.error and len(at.metric) == 1


def test_try_page_batch_keeps_each_reviews_line(finished_run):
    at = app("pages/try.py")
    at.text_area(key="batch_text").input("A wonderful film.\n\n   \nDreadful, avoid it.\n").run()
    at.button(key="batch_go").click().run()
    assert not at.error
    table = at.dataframe[-1].value
    assert table["line"].tolist() == [1, 4] and table["text"].tolist() == ["A wonderful film.", "Dreadful, avoid it."]
    assert table[f"{finished_run.run_id} label"].isin(["negative", "positive"]).all()


def test_try_page_batch_file_keeps_row_numbers_and_lists_empty_rows(finished_run):
    at = app("pages/try.py")
    at.radio(key="batch_mode").set_value("Upload a file").run()
    csv = "id,review\n7,Loved every minute.\n8,   \n9,\n10,Boring and far too long.\n"
    at.file_uploader(key="batch_file").upload("mine.csv", csv.encode(), "text/csv").run()
    assert any("2 empty reviews skipped in mine.csv:review (rows 1, 2)" in c.value for c in at.caption)
    at.button(key="batch_go").click().run()
    assert not at.error and not at.exception
    table = at.dataframe[-1].value
    assert table["row"].tolist() == [0, 3] and table["text"].tolist() == ["Loved every minute.", "Boring and far too long."]


def test_try_page_reports_a_deleted_model(finished_run):
    import shutil

    at = app("pages/try.py")
    shutil.rmtree(finished_run.model_dir)
    at.text_area(key="try_text").input("Fine.")
    at.button(key="try_go").click().run()
    assert not at.exception


def test_train_form_shows_a_bad_value_and_launches_nothing():
    at = app("pages/train.py")
    at.number_input(key="train_learning_rate").set_value(-0.001)
    at.button(key="FormSubmitter:train_form-🚀 Launch").click().run()
    assert not at.exception
    assert any("learning_rate: must be > 0" in e.value for e in at.error)
    from core import jobs

    assert jobs.list_runs() == []


def test_train_forms_more_settings_reach_the_run(lab_home):
    """The evaluation interval (the live validation curve's points), a balanced sample, the test rows, freezing
    and a name travel from the form to the run's config.json; a clash between two of them is named at its field."""
    import fcntl

    from core import jobs

    at = app("pages/train.py")
    launch = "FormSubmitter:train_form-🚀 Launch"
    at.radio(key="train_mode").set_value("One run")
    at.number_input(key="train_max_train_samples").set_value(1000)
    at.number_input(key="train_samples_per_class").set_value(300)
    at.button(key=launch).click().run()
    assert not at.exception and jobs.list_runs() == []
    assert any("samples_per_class: set either max_train_samples or samples_per_class, not both" in e.value
               for e in at.error)

    lab_home.mkdir(parents=True, exist_ok=True)
    with open(lab_home / "queue.lock", "w") as lock:  # held: the run stays queued, no worker trains it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            at.number_input(key="train_max_train_samples").set_value(0)
            at.number_input(key="train_eval_steps").set_value(50)
            at.number_input(key="train_max_eval_samples").set_value(400)
            at.number_input(key="train_validation_size").set_value(200.0)
            at.number_input(key="train_freeze_layers").set_value(2)
            at.checkbox(key="train_torch_compile").check()
            at.text_input(key="train_name").input("balanced 300")
            at.checkbox(key="train_keep_checkpoints").check()
            at.button(key=launch).click().run()
            assert not at.exception and not at.error, [e.value for e in at.error]
            (queued,) = jobs.list_runs()
            config = json.loads(RunDir.for_id(queued["id"]).config_path.read_text())
        finally:
            for run in jobs.queued_runs():
                jobs.stop(run.run_id)
    assert (config["samples_per_class"], config["max_train_samples"], config["eval_steps"]) == (300, None, 50)
    assert (config["max_eval_samples"], config["validation_size"], config["freeze_layers"]) == (400, 200, 2)
    assert config["torch_compile"] is True
    assert config["name"] == "balanced 300" and queued["name"] == "balanced 300" and config["keep_checkpoints"] is True


def test_train_upload_is_checked_before_launch_and_never_falls_back_to_the_preset():
    from core import jobs

    at = app("pages/train.py")
    at.radio(key="train_source_choice").set_value("Upload a file").run()
    launch = "FormSubmitter:train_form-🚀 Launch"
    at.button(key=launch).click().run()  # upload mode, no file: not the preset's Amazon data
    assert not at.exception and any("dataset: upload a file" in e.value for e in at.error)

    csv = "text,label\nLovely,pos\nAwful,neg\nGood,maybe\n"
    at.file_uploader(key="train_upload").upload("odd.csv", csv.encode(), "text/csv").run()
    assert any("label_field: cannot map labels ['maybe']" in e.value for e in at.error)
    at.button(key=launch).click().run()
    assert any("dataset: upload a file" in e.value for e in at.error) and jobs.list_runs() == []
    csv = "text,label\nLovely,pos\nGreat,pos\nSuperb,positive\n"  # nothing to tell positive from
    at.file_uploader(key="train_upload").upload("glowing.csv", csv.encode(), "text/csv").run()
    assert any("label_field: every row of glowing.csv has the label positive: a classifier needs both labels"
               in e.value for e in at.error)

    at = app("pages/train.py")
    at.radio(key="train_source_choice").set_value("Upload a file").run()
    csv = "text,label\nLovely,1\n   ,0\nAwful,0\n,1\n"
    at.file_uploader(key="train_upload").upload("holes.csv", csv.encode(), "text/csv").run()
    assert not at.error
    assert any("2 empty reviews skipped in holes.csv (rows 1, 3)" in c.value for c in at.caption)


def test_fine_tune_further_from_the_runs_page_link(finished_run, tmp_path):
    from conftest import review_frame
    from core import jobs

    more = tmp_path / "more"  # the preset keeps 100 rows for validation
    more.mkdir()
    review_frame(160).to_parquet(more / "train.parquet")
    review_frame(16).to_parquet(more / "test.parquet")

    at = app("pages/runs.py")
    link = next(l for l in at.get("page_link") if "Fine-tune this model further" in l.proto.label)
    assert link.proto.query_string == f"init_from={finished_run.run_id}"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["init_from"] = finished_run.run_id
    at.run()
    at.switch_page("pages/train.py").run()
    assert at.selectbox(key="train_init_from").value == finished_run.run_id  # preselected from the link
    assert at.radio(key="train_mode").value == "One run"  # and the preset's target stage: IMDB, 64 tokens
    assert at.text_input(key="train_dataset").value.endswith("imdb") and at.number_input(key="train_max_length").value == 64
    at.text_input(key="train_dataset").input(str(more))
    at.text_input(key="train_text_fields").input("title,content")
    at.number_input(key="train_max_length").set_value(32)
    at.number_input(key="train_eval_max_length").set_value(32)
    at.number_input(key="train_eval_windows").set_value(1)
    at.button(key="FormSubmitter:train_form-🚀 Launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    launched = [r for r in jobs.list_runs() if r["id"] != finished_run.run_id]
    assert len(launched) == 1
    run = RunDir.for_id(launched[0]["id"])
    assert run.config()["init_from"] == finished_run.run_id
    assert jobs.wait(run.run_id, timeout=300)["state"] == "completed"  # trained from the finished run's weights
    assert "/runs/" + finished_run.run_id + "/model" in run.log_path.read_text()


def test_train_form_carries_the_presets_target_scoring_and_checks_it():
    at = app("pages/train.py")
    # offline-quick scores IMDB as up to two 112-token windows; the form starts from that, not from the source's 128 x 1.
    assert at.number_input(key="train_target_windows").value == 2
    assert at.number_input(key="train_target_eval_len").value == 112
    assert at.number_input(key="train_target_confidence").value == 0.85
    # The source stage reads 16 tokens, half of them from the start (where an Amazon review's title is).
    assert at.number_input(key="train_max_length").value == 16 and at.number_input(key="train_head_fraction").value == 0.5
    at.number_input(key="train_target_windows").set_value(0)
    at.button(key="FormSubmitter:train_form-🚀 Launch").click().run()
    assert not at.exception
    assert any("target.eval_windows: must be between 1 and 32" in e.value for e in at.error)
    from core import jobs

    assert jobs.list_runs() == []


@pytest.fixture
def finished_pipeline(built_once, tmp_path_factory, tiny_model):
    """A completed pipeline whose target stage reads reviews differently from its source stage, and whose
    source reviews come from two product domains, as Amazon multi-domain's do."""
    def build():
        import pandas as pd

        from conftest import tiny_pipeline, write_reviews
        from core.jobs import create_run
        from core.pipeline import run_pipeline

        folder = tmp_path_factory.mktemp("pipeline-data")
        reviews = write_reviews(folder / "reviews")
        for split in ("train", "test"):
            frame = pd.read_parquet(reviews / f"{split}.parquet")
            frame["domain"] = ["books" if (i // 2) % 2 else "kitchen" for i in range(len(frame))]
            frame.to_parquet(reviews / f"{split}.parquet")
        pcfg = tiny_pipeline(folder, reviews, tiny_model, eval_max_length=16, eval_windows=2, eval_confidence=0.9)
        pipe = create_run("pipeline", pcfg)
        assert run_pipeline(pcfg, pipe)["state"] == "completed"
        return pipe.run_id

    return built_once("finished_pipeline", build)


def test_try_page_reads_a_pipelines_two_models_as_its_table_did(finished_pipeline):
    pid = finished_pipeline.run_id
    at = app("pages/try.py")
    assert at.multiselect(key="try_models").value == [f"{pid}.source", f"{pid}.target", f"{pid}.baseline"]
    # The zero-shot row scored the source model the way the target stage reads: so does the page, by default.
    assert at.selectbox(key="try_read_as").value == f"{pid}.target"
    at.text_area(key="try_text").input("A slow start, but a wonderful film.")
    at.button(key="try_go").click().run()
    captions = [c.value for c in at.caption if c.value.startswith(pid)]
    assert captions == [f"{pid}.{stage} · 16 tokens x up to 2 windows, stop at p 0.9"
                        for stage in ("source", "target", "baseline")]
    # Each answer says which model gave it in words, not only as a run id.
    titles = [m.value for m in at.markdown if m.value.startswith("**")]
    assert titles[-3:] == ["**Zero-shot: trained on the source only**", "**Fine-tuned on the target**",
                           "**Target-only baseline**"]
    at.selectbox(key="try_read_as").set_value("own")
    at.button(key="try_go").click().run()
    captions = [c.value for c in at.caption if c.value.startswith(pid)]
    assert captions == [f"{pid}.source · 32 tokens head_tail", f"{pid}.target · 16 tokens x up to 2 windows, stop at p 0.9",
                        f"{pid}.baseline · 16 tokens x up to 2 windows, stop at p 0.9"]
    assert not at.exception and len(at.metric) == 3


def test_try_page_shows_which_words_moved_each_model(finished_pipeline):
    at = app("pages/try.py")
    at.checkbox(key="try_explain").check()
    at.text_area(key="try_text").input("A <b>slow</b> start, but a wonderful film.")
    at.button(key="try_go").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    shaded = [m.value for m in at.markdown if m.value.startswith('<div class="word-effects"')]
    assert len(shaded) == 3  # one per model, side by side
    assert all(v.count("<span title=") == 7 for v in shaded)  # one span per word
    assert "&lt;b&gt;slow&lt;/b&gt;" in shaded[0] and "<b>" not in shaded[0]  # user text is escaped, never HTML
    at.text_area(key="try_text").input(" ".join(["long"] * 201))
    at.button(key="try_go").click().run()  # too long to explain: each model still answers, and says why
    assert len(at.metric) == 3
    assert [e.value for e in at.error] == ["review: has 201 words; word effects are measured for up to 200"] * 3


def test_transfer_page_puts_the_figures_first_and_speaks_in_points(finished_pipeline):
    at = app("pages/transfer.py")
    assert not at.exception, at.exception
    # every row was scored on both labels (a tiny model may still answer one label: that warning is its own)
    assert not any(w.value.startswith("Scored on reviews of one label only") for w in at.warning)
    table = at.dataframe[0].value
    # The same five figures as bars, in the table's order.
    bars = json.loads(next(c for c in at.get("plotly_chart") if "transfer_bars" in c.proto.id).proto.spec)["data"][0]
    assert bars["type"] == "bar" and bars["y"] == list(table["accuracy"]) and bars["x"] == list(table["row"])
    # A long "scored as" must not push the accuracy off screen: the figures come first.
    assert list(table.columns)[:3] == ["row", "accuracy", "F1"] and list(table.columns)[-1] == "scored as"
    assert table["scored as"].iloc[1].startswith("16 tokens x up to 2 windows, stop at p 0.9 (")
    # Gaps in points, and blank (not "None") on the rows they do not apply to.
    finetuned, zero_shot = table.iloc[2], table.iloc[1]
    assert finetuned["vs zero-shot (points)"] == f"{(finetuned['accuracy'] - zero_shot['accuracy']) * 100:+.2f}"
    assert list(table["vs baseline (points)"]) == ["", "", finetuned["vs baseline (points)"], "", ""]
    notes = " ".join(str(m.value) for m in at.markdown)
    assert "points" in notes and "%" not in notes.split("Fine-tuning on the target", 1)[1]
    # Forgetting per product domain, in points too.
    assert "Source accuracy by domain, before and after target training" in [h.value for h in at.subheader]
    domains = at.dataframe[1].value
    assert list(domains.columns) == ["domain", "n", "before", "after", "change (points)"]
    assert list(domains["domain"]) == ["books", "kitchen"] and domains["n"].sum() == 16
    first = domains.iloc[0]
    assert first["change (points)"] == f"{(first['after'] - first['before']) * 100:+.2f}"
    # The table for a report, as the pipeline's results.md and results.json have it.
    assert [b.proto.label for b in at.get("download_button")][:2] == ["The table as Markdown", "The table as JSON"]


def test_the_overview_shows_the_latest_transfer_at_a_glance(finished_pipeline):
    rows = {r["name"]: r["accuracy"] for r in json.loads((finished_pipeline.path / "results.json").read_text())["rows"]}
    at = app()
    assert not at.exception, at.exception
    metrics = {m.label: (m.value, m.delta) for m in at.metric}
    assert list(metrics) == ["Source", "Target zero-shot", "Target fine-tuned", "Source after target", "Target-only baseline"]
    assert metrics["Target zero-shot"] == (f"{rows['target_zero_shot']:.4f}", "")  # nothing to compare it with
    assert metrics["Target fine-tuned"][1] == f"{(rows['target_finetuned'] - rows['target_zero_shot']) * 100:+.2f} points"
    assert metrics["Target-only baseline"][1] == f"{(rows['target_only_baseline'] - rows['target_finetuned']) * 100:+.2f} points"


def test_a_pipelines_details_say_what_each_stage_did_and_took(finished_pipeline):
    at = app("pages/runs.py")
    at.multiselect(key="runs_selected").set_value([finished_pipeline.run_id]).run()
    assert not at.exception, at.exception
    stages = next(d.value for d in at.dataframe if "stage" in d.value.columns)
    assert list(stages["stage"]) == ["source", "target_zero_shot", "target", "source_after_target", "baseline"]
    assert stages["what"].iloc[1] == "score that model on the target (zero-shot)"
    assert stages["time"].str.fullmatch(r"\d+m\d\ds").all() and stages["state"].str.endswith("completed").all()
    results = {r["name"]: r["accuracy"] for r in json.loads((finished_pipeline.path / "results.json").read_text())["rows"]}
    assert stages["accuracy"].iloc[1] == pytest.approx(results["target_zero_shot"], abs=1e-4)
    # The source stage's model was scored by the stage itself (its test split) and by the pipeline (zero-shot).
    at.multiselect(key="runs_selected").set_value([f"{finished_pipeline.run_id}.source"]).run()
    scores = next(d.value for d in at.dataframe if "by" in d.value.columns)
    assert sorted(scores["by"]) == ["its pipeline: target, zero-shot", "this run"]


def test_transfer_page_shows_a_stopped_pipelines_rows_and_writes_nothing(finished_pipeline):
    (finished_pipeline.path / "results.json").unlink()  # as if stopped before its table was written
    (finished_pipeline.path / "results.md").unlink()
    finished_pipeline.update_status(state="stopped")
    at = app("pages/transfer.py")
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == 5  # every stage had finished: all five rows, read from the stage folders
    assert not (finished_pipeline.path / "results.json").exists() and not (finished_pipeline.path / "results.md").exists()


def test_transfer_page_scores_the_models_on_reviews_from_other_sources(finished_pipeline):
    at = app("pages/transfer.py")
    before = len(at.dataframe)  # nothing is scored before the click
    assert not [e for e in at.expander if e.label.endswith(" wrong")]
    at.button(key="other_sources_go").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert len(at.dataframe) == before + 1 + 3  # the scores, and each model's wrong reviews
    table = at.dataframe[before].value
    assert list(table["model"]) == ["zero-shot: trained on the source only", "fine-tuned on the target",
                                    "target-only baseline"]
    assert list(table.columns) == ["model", "accuracy", "airline", "app", "game", "hotel", "music", "restaurant"]
    assert ((table["accuracy"] >= 0) & (table["accuracy"] <= 1)).all()
    # Each model's wrong reviews are listed, as many as its accuracy leaves out of the 60.
    labels = [e.label for e in at.expander if e.label.endswith(" wrong")]
    assert len(labels) == 3
    for (_, row), label in zip(table.iterrows(), labels):
        assert label == f"{row['model']}: {round((1 - row['accuracy']) * 60)} wrong"


def test_runs_page_follows_the_stage_a_running_pipeline_is_in(finished_pipeline):
    """Caught mid-way through stage 2, as its worker writes it (the worker here is this test's own process,
    so the reconciler finds it alive): the page shows that stage's progress, and no stale phase."""
    pid = finished_pipeline.run_id
    finished_pipeline.update_status(state="running", stage="target", step=2, ended_at=None)
    finished_pipeline.mark_worker()
    stage = RunDir.for_id(f"{pid}.target")
    stage.update_status(state="running", step=1, total_steps=4, epoch=0.25, phase="training", ended_at=None)
    stage.mark_worker()
    at = app("pages/runs.py")
    assert not at.exception, at.exception
    assert f"Stage target: {pid}.target" in [c.value for c in at.caption]
    bars = [str(p.proto) for p in at.get("progress")]
    assert "2/5 stages done" in bars[0] and "step 1/4" in bars[1]
    assert "Now: training" in [c.value for c in at.caption]
    # The sidebar's queue says how far, before the id (a narrow sidebar cuts a label's end): 2 stages and a quarter
    links = [str(link.proto.label) for link in app().sidebar.get("page_link")]
    assert any(label.endswith(f" 45% · {pid}") for label in links), links
    assert not any(c.value.startswith("Now: evaluating") for c in at.caption)
    # The rows it has so far are one click away.
    link = at.get("page_link")[-1].proto
    assert link.label == "Its comparison table, on the Transfer page" and link.query_string == f"pipeline={pid}"


def test_overview_start_button_queues_the_preset_and_shows_it_everywhere(lab_home):
    """The Overview's one button queues the pipeline for this machine; the sidebar's queue and the table show it
    in the same click. The test holds the dispatcher's lock, so the dispatcher it starts exits at once and the
    15-minute pipeline stays queued (and is cancelled)."""
    import fcntl

    from core import jobs

    lab_home.mkdir(parents=True, exist_ok=True)
    with open(lab_home / "queue.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            at = app()
            at.button(key="start_pipeline").click().run()
            assert not at.exception, at.exception
            queued = [r for r in jobs.list_runs() if r["kind"] == "pipeline"]
            assert [r["state"] for r in queued] == ["queued"]
            run_id = queued[0]["id"]
            assert any(run_id in s.value for s in at.success)
            assert any(str(link.proto.label).endswith(run_id) for link in at.sidebar.get("page_link"))
            assert run_id in list(at.dataframe[0].value["run"])
        finally:  # cancelled before the lock is let go, pass or fail: a late dispatcher finds nothing to start
            for run in jobs.queued_runs():
                jobs.stop(run.run_id)
    assert RunDir.for_id(run_id).status()["state"] == "cancelled"


def test_evaluate_a_finished_run_from_the_runs_page(finished_run, tmp_path):
    """The Runs page's Evaluate form queues an eval job (zero-shot: no training); a bad path is refused in the
    page with nothing queued; the job's figures then show in the model's details and the job's own."""
    from core import jobs

    other = tmp_path / "films.csv"
    other.write_text("review,stars\nA wonderful film,pos\nDull and long,neg\nLoved it,pos\nAwful acting,neg\n")
    at = app("pages/runs.py")
    form = f"eval_form_{finished_run.run_id}"
    submit = f"FormSubmitter:{form}-Queue the evaluation"
    assert at.selectbox(key=f"eval_data_{finished_run.run_id}").value.endswith("imdb")  # the offline IMDB, here

    at.selectbox(key=f"eval_data_{finished_run.run_id}").set_value("Another (type it below)")
    at.text_input(key=f"eval_other_{finished_run.run_id}").input(str(tmp_path / "nowhere.csv"))
    at.button(key=submit).click().run()
    assert [e.value for e in at.error] == [f"dataset: no such file or folder: {tmp_path / 'nowhere.csv'}"]
    assert [r["id"] for r in jobs.list_runs()] == [finished_run.run_id]

    at.text_input(key=f"eval_other_{finished_run.run_id}").input(str(other))
    key = f"eval_{finished_run.run_id}_"  # the form's fields are EvalConfig's
    at.text_input(key=key + "text_fields").input("review")
    at.text_input(key=key + "label_field").input("stars")
    at.number_input(key=key + "windows").set_value(2)
    at.number_input(key=key + "samples_per_class").set_value(2)  # a balanced sample: 2 + 2 ...
    at.button(key=submit).click().run()
    assert [e.value for e in at.error] == [  # ... refused beside its field while the first 2,000 are asked for too
        "samples_per_class: set either max_samples or samples_per_class, not both"]
    assert [r["id"] for r in jobs.list_runs()] == [finished_run.run_id]
    at.number_input(key=key + "max_samples").set_value(0)
    at.button(key=submit).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job_id = next(r["id"] for r in jobs.list_runs() if r["kind"] == "eval")
    assert any(job_id in s.value for s in at.success)
    config = RunDir.for_id(job_id).config()
    assert (config["run"], config["text_fields"], config["label_field"], config["windows"]) == (
        finished_run.run_id, ["review"], "stars", 2)
    assert (config["samples_per_class"], config["max_samples"]) == (2, None)
    status = jobs.wait(job_id, timeout=180)
    assert status["state"] == "completed" and status["metrics"]["n"] == 4

    at = app("pages/runs.py")  # the model's details list the job's figures
    assert at.multiselect(key="runs_selected").value == [job_id]  # the newest run, shown first
    at.multiselect(key="runs_selected").set_value([finished_run.run_id]).run()
    assert "**Evaluations of this model**" in [m.value for m in at.markdown]
    table = next(d.value for d in at.dataframe if "by" in d.value.columns)
    scored = table[table["job"] == f"/runs?run={job_id}"]
    assert scored["n"].tolist() == [4] and scored["accuracy"].tolist() == [status["metrics"]["accuracy"]]
    at.multiselect(key="runs_selected").set_value([job_id]).run()  # and the job's own: its confusion matrix
    assert not at.exception, at.exception
    assert any(job_id in str(m.value) for m in at.markdown)
    assert [c for c in at.get("plotly_chart") if "films.csv" in str(c.proto)]
    assert not any(w.value.startswith("Every review in") for w in at.warning)  # both labels are in films.csv
    wrong = round((1 - status["metrics"]["accuracy"]) * 4)
    assert f"**The {wrong} reviews it got wrong**, the surest mistakes first" in [m.value for m in at.markdown]
    mistakes = next(d.value for d in at.dataframe if "probability" in d.value.columns)
    assert len(mistakes) == wrong and (mistakes["label"] != mistakes["predicted"]).all()
    assert mistakes["probability"].is_monotonic_decreasing
    assert at.get("download_button")


def test_an_evaluation_of_one_label_says_what_its_accuracy_means(lab_home):
    """`eval --max-samples 2000` on the Hub's imdb test split (sorted by label) scores 2,000 negative reviews."""
    from core.runs import write_json_atomic

    job = RunDir.for_id("20260101-000000-eval-cccccc")
    (job.evals_dir / "imdb-test").mkdir(parents=True)
    write_json_atomic(job.config_path, {"kind": "eval", "run": "somewhere", "dataset": "imdb"})
    job.update_status(state="completed", metrics={"accuracy": 0.9, "n": 2000})
    write_json_atomic(job.evals_dir / "imdb-test" / "metrics.json", {
        "dataset": "imdb:test[:2000]", "accuracy": 0.9, "f1": 0.47, "n": 2000, "confusion": [[1800, 200], [0, 0]]})
    at = app("pages/runs.py")
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == [
        "Every review in imdb:test[:2000] is negative: its accuracy only says how often the model gives that "
        "label (the first rows of a split sorted by label? *N per label* in the Evaluate form, or `eval --per-class "
        "N`, draws a balanced sample)."]


def test_a_model_that_gives_every_review_one_label_is_called_out(reviews_dir, tiny_model, tmp_path):
    """A run that learnt nothing says the same label to every review and scores 0.5 on a balanced test split,
    which reads like a weak model; its log, `eval` and the Runs page say what it is."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from conftest import run_cli

    says_positive = tmp_path / "says-positive"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    with torch.no_grad():  # a head no review can move: the state of a run stopped before it learnt anything
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([-30.0, 30.0]))
    model.save_pretrained(says_positive)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(says_positive)
    (tmp_path / "c.json").write_text(json.dumps(tiny_config(str(says_positive), reviews_dir, learning_rate=1e-7).to_dict()))
    trained = run_cli("train", "--config", str(tmp_path / "c.json"), "--json")
    status = json.loads(trained.stdout)
    assert status["state"] == "completed" and status["metrics"]["test_accuracy"] == 0.5
    run = RunDir.for_id(status["run_id"])
    note = ("the model says positive for all 16 reviews: it has not learnt to tell the labels apart, so its accuracy "
            "is only the share of positive reviews (train it on more reviews or for more steps, or at another "
            "learning rate)")
    assert f"note: {note}" in run.log_path.read_text()
    assert f"note: {status['metrics']['test_dataset']}: {note}" in trained.stderr
    scored = run_cli("eval", "--run", run.run_id, "--data", str(reviews_dir / "test.parquet"), "--json")
    assert scored.returncode == 0 and f"note: {note}" in scored.stderr, scored.stderr
    at = app("pages/runs.py")
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == [f"{status['metrics']['test_dataset']}: {note}."]


def test_the_transfer_page_flags_a_row_scored_on_one_label(lab_home):
    from core.pipeline import ROW_TITLES
    from core.runs import write_json_atomic

    pipe = RunDir.for_id("20260101-000000-pipeline-dddddd")
    pipe.path.mkdir(parents=True)
    write_json_atomic(pipe.config_path, {"kind": "pipeline"})
    pipe.update_status(state="completed", step=5, total_steps=5)
    write_json_atomic(pipe.path / "results.json", {"pipeline_id": pipe.run_id, "wall_s": 1.0, "rows": [
        {"name": "source", "dataset": "amazon_polarity", "split": "test", "accuracy": 0.9, "f1": 0.9, "n": 100,
         "confusion": [[45, 5], [5, 45]]},
        {"name": "target_zero_shot", "dataset": "imdb", "split": "test[:2000]", "accuracy": 0.8, "f1": 0.44, "n": 2000,
         "confusion": [[1600, 400], [0, 0]]},
        {"name": "target_only_baseline", "dataset": "imdb", "split": "test", "accuracy": 0.5, "f1": 0.33, "n": 200,
         "confusion": [[0, 100], [0, 100]]}]})  # a baseline that learnt nothing from too few reviews
    at = app("pages/transfer.py")
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == [
        "Scored on reviews of one label only, so the accuracy there says how often the model gives that label (the "
        "first rows of a split sorted by label, such as the Hub's imdb, cut by max_eval_samples?): Target, zero-shot "
        "(imdb:test[:2000]: all 2000 negative).",
        "A model that gives every review the same label has not learnt to tell them apart; its accuracy is only the "
        "share of that label (more training reviews or steps, or another learning rate, for that stage): "
        f"{ROW_TITLES['target_only_baseline']} (all 200 positive)."]


def test_curves_keep_their_axes_where_the_quantity_lives():
    import pandas as pd

    from pages.common import curve_figure

    # A stopped run's one evaluation, and a resumed run's flat one: Plotly alone pads those to 0.5-1.5 and -0.5-1.
    frame = pd.DataFrame({"step": [72, 75], "eval_accuracy": [0.88, 0.88], "eval_loss": [0.32, None]})
    low, high = curve_figure({"run": frame}, "eval_accuracy", "Validation accuracy").layout.yaxis.range
    assert 0.8 < low < 0.88 < high <= 1.01
    _, high = curve_figure({"run": frame.assign(eval_accuracy=[0.99, 1.0])}, "eval_accuracy", "v").layout.yaxis.range
    assert high == 1.01
    assert curve_figure({"run": frame}, "eval_loss", "Validation loss").layout.yaxis.rangemode == "nonnegative"


def test_the_search_form_names_a_bad_range_and_launches_nothing(lab_home):
    at = app("pages/search.py")
    at.number_input(key="search_learning_rate_low").set_value(0.5).run()  # above its high, 3e-4
    assert any("--param learning_rate" in e.value and "LOW is above HIGH" in e.value for e in at.error), at.error
    at.button(key="FormSubmitter:search_form-🔎 Launch search").click().run()
    assert not at.exception
    assert not (lab_home / "runs").exists() or not any((lab_home / "runs").iterdir())


def test_the_search_page_shows_a_search_s_trials_charts_and_best(reviews_dir, tiny_model, tmp_path):
    from conftest import run_cli
    from core import jobs

    (tmp_path / "c.json").write_text(json.dumps(tiny_config(tiny_model, reviews_dir, epochs=3, eval_steps=4).to_dict()))
    out = run_cli("search", "--config", str(tmp_path / "c.json"), "--param", "learning_rate=1e-4:1e-2:log",
                  "--param", "batch_size=4,8", "--trials", "3", "--pruner", "none", "--json")
    search_id = json.loads(out.stdout)["run_id"]
    assert jobs.wait(search_id, timeout=300)["state"] == "completed"
    at = app("pages/search.py")
    assert not at.exception, at.exception
    trials = at.dataframe[0].value
    assert trials["trial"].tolist() == [1, 2, 3] and trials["run"].str.contains(f"{search_id}.t0").all()
    assert {"learning_rate", "batch_size", "eval_accuracy"} <= set(trials.columns)
    assert len(at.get("plotly_chart")) >= 3  # history, intermediate values, parallel coordinates (+ importances)
    assert any("Best: trial" in s.value for s in at.success)
    assert "3 of 3 trials finished" in str(at.get("progress")[0].proto)


def test_the_transfer_page_draws_a_curve_with_its_crossover(reviews_dir, tiny_model, tmp_path):
    from conftest import run_cli, tiny_pipeline
    from core import jobs

    pcfg = tiny_pipeline(tmp_path, reviews_dir, tiny_model)
    (tmp_path / "pipe.json").write_text(json.dumps(pcfg.to_dict()))
    out = run_cli("curve", "--config", str(tmp_path / "pipe.json"), "--labels", "8,16", "--seeds", "1",
                  "--min-steps", "4", "--json")
    curve_id = json.loads(out.stdout)["run_id"]
    assert jobs.wait(curve_id, timeout=300)["state"] == "completed"
    at = app("pages/transfer.py")
    assert not at.exception, at.exception
    assert any("transfer" in m.value and ("helps" in m.value or "labels" in m.value) for m in at.markdown)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("Target accuracy against target labels" in str(c["layout"].get("title")) for c in charts)
    table = at.dataframe[0].value
    assert table["labels"].tolist() == [8, 8, 16, 16] and set(table["seeds"]) == {1}


def test_the_sidebar_says_where_runs_go(monkeypatch):
    at = app()
    assert any(c.value.startswith("Runs go to local (this machine") for c in at.sidebar.caption)
    monkeypatch.setenv("SENTIMENT_LAB_BACKEND", "ray")
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9")  # nothing listens there
    at = app()
    assert not at.exception
    warning = " ".join(w.value for w in at.sidebar.warning)
    assert "Runs go to **ray**" in warning and ("127.0.0.1:9 cannot be reached" in warning or "setup-ray" in warning)


def test_a_running_run_is_paused_and_continued_from_the_runs_page(finished_run):
    """Its worker is this test's own process (the reconciler finds it alive): the button writes and lifts PAUSE,
    which the training callback honours between two steps (tests/test_jobs.py holds real runs with it)."""
    finished_run.update_status(state="running", step=2, total_steps=4, ended_at=None)
    finished_run.mark_worker()
    at = app("pages/runs.py")
    at.button(key=f"pause_{finished_run.run_id}").click().run()
    assert finished_run.paused_from() == 0
    assert at.button(key=f"pause_{finished_run.run_id}").label == "▶ Continue"
    at.button(key=f"pause_{finished_run.run_id}").click().run()
    assert finished_run.paused_from() is None and not at.exception
