"""Runs: the list, actions, live curves read from each run folder's metrics.jsonl, and several runs side by side."""

import json

import pandas as pd
import streamlit as st

from core import jobs, kinds
from core.config import PRESETS, ConfigError, EvalConfig
from core.export import card, export, push
from core.paths import PROJECT_ROOT, artifacts_root, resolve_local
from core.evaluation import wrong_predictions
from core.metrics import one_answer_note, single_label
from core.pipeline import OTHER_SOURCES, ROW_TITLES, STAGE_STEPS
from core.runs import ACTIVE_STATES, RunDir, read_json
from core.compare import compare, transposed
from core.tracking import run_link, tracking_on
from pages.common import (RUNS_COLUMNS, STATE_ICONS, confusion_figure, curve_charts, curve_sources, duration, live,
                          runs_of,
                          reliability_figure, run_label, run_name, runs_frame, runs_table, setting_widgets, show_error,
                          through_router)

through_router(__file__)
st.title("Runs")
rows = runs_table()
if not rows:
    st.info("No runs yet. Launch one from the Train page.")
    st.stop()
by_id = {r["id"]: r for r in rows}


def table() -> None:
    """Jobs only (a pipeline's stages are listed under it in its details and can be picked below), reread on every
    refresh while any run is active: its progress and states move with the sidebar's queue."""
    current = runs_table() if live_table else rows
    st.dataframe(runs_frame([r for r in current if not r.get("parent")]), hide_index=True, width="stretch",
                 key="runs_table", column_config=RUNS_COLUMNS)
    if live_table and not any(r["state"] in ACTIVE_STATES for r in current):
        st.rerun()  # all ended: a full rerun draws the page once more, without the timer


live_table = any(r["state"] in ACTIVE_STATES for r in rows)
live(table, live_table)()

# The selection lives in the URL (?run=<id>), so a reload, a new tab or a shared link shows the same run.
linked = [r for r in st.query_params.get_all("run") if r in by_id]
# Labels without the state: the browser sends a multiselect's choice back as its label, and a label that changed
# with the run's state (running -> completed) would no longer match, dropping the run from the selection.
selected = st.multiselect("Show runs (several to compare)", list(by_id), default=linked or [rows[0]["id"]],
                          format_func=lambda i: run_name(by_id[i]), key="runs_selected")
if selected != linked:
    st.query_params["run"] = selected
if st.session_state.get("runs_flash"):  # what the last Evaluate form queued, said once after its rerun
    job_id = st.session_state.pop("runs_flash")
    st.success(f"Evaluation queued: {job_id}. It runs in the background, like training.", icon="🧪")
    st.page_link("pages/runs.py", label=f"Follow {job_id}", icon="📈", query_params={"run": job_id})


def actions(run_id: str) -> None:
    state = by_id[run_id]["state"]
    is_stage = bool(by_id[run_id].get("parent"))
    # With several runs picked, each row of buttons says whose it is (the kind and hash end of the id).
    whose = f" {run_id.split('-', 2)[-1]}" if len(selected) > 1 else ""
    cols = st.columns(4)
    try:
        if state in ("running", "stopping") and not is_stage and cols[0].button(f"⏹ Stop{whose}", key=f"stop_{run_id}"):
            RunDir.for_id(run_id).request_stop()  # the worker ends after the current step
            with st.spinner("Stopping after the current step…"):
                jobs.stop(run_id, timeout=60)
            st.rerun()
        run = RunDir.for_id(run_id)
        if state == "running" and not is_stage:  # held between two steps: its memory kept, no CPU used
            paused = run.paused_from() is not None
            if cols[1].button(f"{'▶ Continue' if paused else '⏸ Pause'}{whose}", key=f"pause_{run_id}"):
                if paused:
                    run.unpause()
                else:
                    run.pause()
                st.rerun()
        if state == "queued" and cols[0].button(f"🚫 Cancel{whose}", key=f"cancel_{run_id}"):
            jobs.stop(run_id)
            st.rerun()
        damaged = not isinstance(read_json(RunDir.for_id(run_id).config_path), dict)
        if state in ("stopped", "interrupted", "failed") and not is_stage and not damaged and cols[1].button(
                f"▶ Resume{whose}", key=f"resume_{run_id}"):
            jobs.resume(run_id)
            st.rerun()
        if state not in ("running", "stopping") and not is_stage:
            with cols[2].popover(f"🗑 Delete{whose}"):
                st.write(f"Delete **{run_id}** and everything in its folder?")
                if st.button("Yes, delete", key=f"delete_{run_id}", type="primary"):
                    jobs.delete(run_id)
                    st.query_params.clear()
                    st.rerun()
    except ValueError as exc:
        show_error(exc)


def progress(status: dict, state: str) -> None:
    if status.get("total_steps"):
        step, total = status.get("step") or 0, status["total_steps"]
        eta = f" · ETA {int(status['eta_s'])} s" if status.get("eta_s") and state == "running" else ""
        speed = f" · {status['samples_per_s']} samples/s" if status.get("samples_per_s") else ""
        text = (f"{step}/{total} stages done" if "stages" in status  # a pipeline counts stages, not steps
                else f"step {step}/{total} · epoch {status.get('epoch', 0)}{eta}{speed}")
        st.progress(min(step / total, 1.0), text=text)
    if status.get("phase") and state in ACTIVE_STATES:  # folders from older versions kept a finished phase
        st.caption(f"Now: {status['phase']}")


def details(run_id: str) -> None:
    run = RunDir.for_id(run_id)
    status = run.status()
    state = status.get("state", "?")
    row = by_id.get(run_id, {"id": run_id, "state": state})
    st.markdown(f"#### {run_label(row)}")
    if status.get("error") or row.get("error"):  # the index says why a damaged folder is listed as failed
        st.error(status.get("error") or row["error"])
    progress(status, state)
    stage = status.get("stage")
    if stage and state in ACTIVE_STATES:  # a pipeline: the progress of the stage it is in
        child = RunDir.for_id(run_id).stage(stage)
        child_status = child.status()
        if child_status:
            st.caption(f"Stage {stage}: {child.run_id}")
            progress(child_status, child_status.get("state", "?"))
    if status.get("stages"):  # where a pipeline's time went, and what each stage reached
        st.dataframe(pd.DataFrame([{
            "stage": name, "what": STAGE_STEPS.get(name, ""), "time": duration(v), "accuracy": v.get("accuracy"),
            "state": f"{STATE_ICONS.get(v.get('state'), '')} {v.get('state')}"} for name, v in status["stages"].items()]),
            hide_index=True, width="stretch", key=f"stages_{run_id}",
            column_config={"accuracy": st.column_config.NumberColumn(format="%.4f")})
    entry = kinds.get(row.get("kind") or "train")
    if entry.page:  # where its results are shown: a pipeline's table, a curve's chart, a search's trials
        page, key, label = entry.page
        st.page_link(page, label=label, icon="🔁", query_params={key: run_id})
    if state == "completed" and run.has_model():
        st.page_link("pages/train.py", label="Fine-tune this model further (Train page)", icon="🏋️",
                     query_params={"init_from": run_id})
        use_elsewhere(run_id, run)
    if tracking_on() and (link := run_link(run)):
        st.link_button("Open in MLflow", link, icon="📊", help=f"Needs the MLflow UI running (make mlflow): {link}")
    if status.get("metrics"):
        with st.expander("Final metrics (status.json)"):
            st.json(status["metrics"])
    if entry.scores(read_json(run.config_path, {}) or {}):  # an evaluation job: what it measured
        eval_result(run_id, run)
    evaluations(run_id, run)
    if state == "completed" and run.has_model():
        evaluate_form(run_id, run)
    with st.expander("Config"):
        raw = run.config_path.read_text(errors="replace") if run.config_path.exists() else ""
        try:
            st.code(json.dumps(json.loads(raw), indent=2), language="json")
        except ValueError:  # a damaged config.json is shown as it is
            st.code(raw or "(no config.json)")
    with st.expander("Log (last 40 lines)"):
        lines = run.log_path.read_text(errors="replace").splitlines()[-40:] if run.log_path.exists() else []
        st.code("\n".join(lines) or "(empty)")


def use_elsewhere(run_id: str, run: RunDir) -> None:
    """The model folder is plain transformers (safetensors, tokenizer, label names): how to take it away."""
    with st.expander("Use this model outside the lab"):
        st.caption("Plain transformers loads the folder; no code of this lab is needed. A plain pipeline cuts a long "
                   "review at the model's maximum length; the lab reads it as the run was scored (the settings in "
                   "sentiment_lab.json beside the weights: tokens, head+tail, windows), as `predict` does.")
        st.code("from transformers import pipeline\n\n"
                f"classify = pipeline(\"text-classification\", model={json.dumps(str(run.model_dir))})\n"
                "print(classify([\"A wonderful film.\", \"Two hours I will never get back.\"], truncation=True))",
                language="python")
        st.code(f"python -m core predict --run {run_id} \"A wonderful film.\"", language="bash")
    share(run_id, run)


def share(run_id: str, run: RunDir) -> None:
    """Its model card to read, the export to a folder of one's own, the push to the Hub."""
    with st.expander("Its model card, export and push to the Hub"):
        try:
            text = card(run)  # as of now: evaluations made since training are in it
        except Exception as exc:  # noqa: BLE001 - a folder from an older version: say it, keep the page
            show_error(exc)
            return
        st.download_button("The card (README.md)", text, f"{run_id}-README.md", "text/markdown",
                           key=f"card_dl_{run_id}", icon=":material/download:")
        with st.container(height=300):
            st.markdown(text.split("---", 2)[-1])  # the body; the YAML front matter is for the Hub
        c1, c2 = st.columns(2)
        with c1.form(f"export_{run_id}"):
            to = st.text_input("Export to (a new folder)", value=str(artifacts_root() / "exports" / run_id),
                               key=f"export_to_{run_id}")
            with_onnx = st.checkbox("Also ONNX (checked against PyTorch on 100 reviews)", key=f"export_onnx_{run_id}")
            if st.form_submit_button("📦 Export"):
                try:
                    with st.spinner("Exporting…"):
                        out = export(run_id, to, onnx=with_onnx)
                    st.success(f"Exported to {out['to']}: {', '.join(out['files'])}")
                except ValueError as exc:
                    show_error(exc)
        with c2.form(f"push_{run_id}"):
            repo = st.text_input("Hub repository (USER/NAME)", key=f"push_repo_{run_id}")
            private = st.checkbox("Private", value=True, key=f"push_private_{run_id}")
            if st.form_submit_button("⬆️ Push to the Hub"):
                try:
                    with st.spinner("Uploading…"):
                        st.success(f"Pushed: {push(run_id, repo.strip(), private=private)}")
                except ValueError as exc:
                    show_error(exc)


def eval_result(run_id: str, run: RunDir) -> None:
    """An eval job's one result: which model, the confusion matrix, per group, and the reviews it got wrong."""
    scored = (read_json(run.config_path, {}) or {}).get("run")
    if scored:
        st.page_link("pages/runs.py", label=f"The model it scores: {scored}", icon="🧠", query_params={"run": scored})
    for name, m in run.evals().items():
        if label := single_label(m.get("confusion")):
            st.warning(f"Every review in {m['dataset']} is {label}: its accuracy only says how often the model gives "
                       "that label (the first rows of a split sorted by label? *N per label* in the Evaluate form, "
                       "or `eval --per-class N`, draws a balanced sample).")
        if note := one_answer_note(m):
            st.warning(f"{m['dataset']}: {note}.")
        st.plotly_chart(confusion_figure(m["confusion"], f"{m['dataset']}: accuracy {m['accuracy']:.4f}"),
                        key=f"confusion_{run_id}_{name}")
        if m.get("by_group"):
            st.dataframe(pd.DataFrame([{m["group_field"]: g, **v} for g, v in m["by_group"].items()]),
                         hide_index=True, key=f"groups_{run_id}_{name}")
        predictions = run.evals_dir / name / "predictions.csv"  # beside metrics.json, wherever the folder now is
        if predictions.is_file():
            wrong = wrong_predictions(predictions)
            st.markdown(f"**The {len(wrong)} reviews it got wrong**, the surest mistakes first")
            st.dataframe(wrong.head(200), hide_index=True, width="stretch", key=f"wrong_{run_id}_{name}",
                         column_config={"probability": st.column_config.NumberColumn(format="%.3f"),
                                        "p_positive": st.column_config.NumberColumn("P(positive)", format="%.3f")})
            st.download_button("Download every prediction (CSV)", predictions.read_bytes(),
                               f"{run_id}-predictions.csv", "text/csv", key=f"download_{run_id}_{name}")


def evaluations(run_id: str, run: RunDir) -> None:
    """Every score of this run's model: those saved in its folder (a pipeline's, `eval --save`) and the eval
    jobs that scored it, each job's figures read from its own folder."""
    def line(m: dict, by: str, dataset: str | None = None, job: str | None = None) -> dict:
        return {"data": m.get("dataset") or dataset, "accuracy": m.get("accuracy"), "f1": m.get("f1"), "n": m.get("n"),
                "ECE": m.get("ece"), "ECE raw": m.get("ece_uncalibrated"),
                "scored as": f"{m['max_length']} tokens, {m.get('windows', 1)} window(s)" if m.get("max_length") else "",
                "by": by, "job": f"/runs?run={job}" if job else ""}  # blank, not "None"

    if not run.has_model():
        return
    # A stage's evaluations named after a table row were the pipeline's (zero-shot, forgetting), not its own.
    own = run.evals()
    table = [line(m, f"its pipeline: {ROW_TITLES[name].lower()}" if name in ROW_TITLES else "this run")
             for name, m in own.items()]
    for job_id in eval_jobs([run_id]):
        job = RunDir.for_id(job_id)  # the folder, not the index: fresh on every refresh
        state = job.status().get("state", "?")
        saved = next(iter(job.evals().values()), {})
        table.append(line(saved, f"{STATE_ICONS.get(state, '')} {state} (eval job)", by_id[job_id].get("dataset"), job_id))
    if table:
        st.markdown("**Evaluations of this model**")
        for m in own.values():  # an eval job's own details say it for the job
            if note := one_answer_note(m):
                st.warning(f"{m['dataset']}: {note}.")
        st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch", key=f"evals_{run_id}",
                     column_config={"accuracy": st.column_config.NumberColumn(format="%.4f"),
                                    "f1": st.column_config.NumberColumn(format="%.4f"),
                                    "ECE": st.column_config.NumberColumn(format="%.4f"),
                                    "ECE raw": st.column_config.NumberColumn(format="%.4f"),
                                    "job": st.column_config.LinkColumn(display_text=r"run=(.*)$")})
        with_rel = [(name, m) for name, m in own.items() if m.get("reliability")]
        if with_rel:
            with st.expander("Reliability diagrams: how far to trust its probabilities"):
                cols = st.columns(min(3, len(with_rel)))
                for i, (name, m) in enumerate(with_rel):
                    cols[i % len(cols)].plotly_chart(reliability_figure(m, m.get("dataset") or name), width="stretch",
                                                     key=f"rel_{run_id}_{name}")


def eval_jobs(run_ids: list[str]) -> list[str]:
    """The eval jobs that score these runs' models."""
    return [r["id"] for r in runs_of("eval", rows) if r.get("model") in run_ids]


def eval_datasets(trained_on: str | None) -> tuple[list[str], int]:
    """The datasets the presets know (Hub names and ../shared/data) and the bundled reviews from other
    sources; the default is the other side of a preset's transfer from the data this run trained on."""
    options: list[str] = []
    for preset in PRESETS.values():
        for d in (preset["target"]["dataset"], preset["source"]["dataset"]):
            options += [d] if d not in options else []
    options.append(str(OTHER_SOURCES.relative_to(PROJECT_ROOT)))
    pairs = {p["source"]["dataset"]: p["target"]["dataset"] for p in PRESETS.values()}
    # else the first that is here (../shared/data/imdb on this project's machines; a Hub name needs the Hub)
    default = pairs.get(trained_on or "") or next((d for d in options if resolve_local(d) is not None), options[0])
    return options, options.index(default)


def evaluate_form(run_id: str, run: RunDir) -> None:
    """Queue an eval job for this run's model: zero-shot on another domain, with no training. Its fields are
    EvalConfig's; a refused value is shown beside its field."""
    config = read_json(run.config_path, {}) or {}
    options, default = eval_datasets(config.get("dataset"))
    errors_key = f"eval_errors_{run_id}"
    errors: dict[str, str] = st.session_state.get(errors_key, {})
    with st.expander("🧪 Evaluate this model on a dataset (zero-shot: no training)", expanded=bool(errors)):
        with st.form(f"eval_form_{run_id}"):
            choice = st.selectbox("Dataset", options + ["Another (type it below)"], index=default, key=f"eval_data_{run_id}")
            typed = st.text_input("Another dataset: a Hub name, or a local folder / .parquet / .csv / .jsonl",
                                  key=f"eval_other_{run_id}")
            for field in ("dataset", ""):  # the dataset's own widgets above, and what no field of the form says
                if field in errors:
                    st.error(errors[field], icon="⚠️")
            values = setting_widgets(EvalConfig, EvalConfig(run=run_id, max_samples=2000), "more", errors,
                                     key_prefix=f"eval_{run_id}_", columns=3)
            if st.form_submit_button("Queue the evaluation", type="primary"):
                data = typed.strip() if choice.startswith("Another") else choice
                try:
                    cfg = EvalConfig(run=run_id, dataset=data, **values)
                    st.session_state["runs_flash"] = jobs.launch("eval", cfg).run_id
                    st.session_state[errors_key] = {}
                except ConfigError as exc:
                    st.session_state[errors_key] = {exc.field: str(exc)}
                except ValueError as exc:
                    st.session_state[errors_key] = {"": str(exc)}
                st.rerun()  # the whole page: the runs table lists the new job, or the form its error


def live_view() -> None:
    """Reread the run folders; while any selected run is active this fragment reruns itself."""
    if len(selected) > 1:
        comparison()
    runs = [RunDir.for_id(i) for i in selected]
    sources = curve_sources(selected)  # a pipeline's curves are its stages' curves
    charts, one_point = curve_charts(sources, st.session_state.get("runs_x", "step")) if sources else ({}, True)
    if charts:
        st.radio("x axis", ["step", "epoch"], horizontal=True, key="runs_x")
        columns = list(charts)
        for i in range(0, len(columns), 2):
            for col, column in zip(st.columns(2), columns[i:i + 2]):
                col.plotly_chart(charts[column], width="stretch", key=f"chart_{column}")
        if one_point and not any((read_json(RunDir.for_id(k).config_path, {}) or {}).get("eval_steps")
                                 for k, _, _ in sources):
            st.caption("Validation is scored once per epoch unless `eval_steps` is set, so its charts have a point per "
                       "epoch. For a curve: *Evaluate every N steps* under the Train page's More settings, or "
                       "`--set eval_steps=N`.")
    elif any(kinds.get(by_id.get(i, {}).get("kind") or "train").trains_models for i in selected):  # curves to come
        st.caption("No metrics yet: curves appear with the first logged steps.")
    for run in runs:
        details(run.run_id)
    now_active = any(RunDir.for_id(i).status().get("state") in ACTIVE_STATES for i in watched)
    if was_active and not now_active:
        st.rerun()  # the run ended: a full rerun rebuilds this view without the timer


def comparison() -> None:
    """Several runs picked: what each reached, and only the settings on which they differ."""
    rows, differ = compare(selected)
    lines = transposed(rows)
    table = pd.DataFrame([cells for _, cells in lines], index=[key for key, _ in lines], columns=[r["run"] for r in rows])
    st.markdown("**Side by side**: what each reached, and " + ("the settings that differ" if differ else
                                                               "the same settings in all"))
    st.dataframe(table, width="stretch", key="runs_compare")


for run_id in selected:
    actions(run_id)
watched = selected + eval_jobs(selected)  # a run's evaluation in progress refreshes its details too
was_active = any(by_id[i]["state"] in ACTIVE_STATES for i in watched)
live(live_view, was_active)()
