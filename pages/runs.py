"""Runs: the list, actions, live curves read from each run folder's metrics.jsonl, and several runs side by side."""

import json

import pandas as pd
import streamlit as st

from core import jobs
from core.runs import ACTIVE_STATES, RunDir, compare, read_json, transposed
from pages.common import (CHARTS, REFRESH_S, curve_figure, metrics_frame, run_label, runs_frame, runs_table,
                          show_error, through_router)

through_router(__file__)
st.title("Runs")
rows = runs_table()
if not rows:
    st.info("No runs yet. Launch one from the Train page.")
    st.stop()
by_id = {r["id"]: r for r in rows}

# Jobs only: a pipeline's stages are listed under it in its details and can be picked below.
st.dataframe(runs_frame([r for r in rows if not r.get("parent")]), hide_index=True, width="stretch", key="runs_table",
             column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1),
                            "accuracy": st.column_config.NumberColumn("accuracy", format="%.4f")})

# The selection lives in the URL (?run=<id>), so a reload, a new tab or a shared link shows the same run.
linked = [r for r in st.query_params.get_all("run") if r in by_id]
selected = st.multiselect("Show runs (several to compare)", list(by_id), default=linked or [rows[0]["id"]],
                          format_func=lambda i: run_label(by_id[i]), key="runs_selected")
if selected != linked:
    st.query_params["run"] = selected


def actions(run_id: str) -> None:
    state = by_id[run_id]["state"]
    is_stage = bool(by_id[run_id].get("parent"))
    cols = st.columns(4)
    try:
        if state in ("running", "stopping") and not is_stage and cols[0].button("⏹ Stop", key=f"stop_{run_id}"):
            RunDir.for_id(run_id).request_stop()  # the worker ends after the current step
            with st.spinner("Stopping after the current step…"):
                jobs.stop(run_id, timeout=60)
            st.rerun()
        if state == "queued" and cols[0].button("🚫 Cancel", key=f"cancel_{run_id}"):
            jobs.stop(run_id)
            st.rerun()
        damaged = not isinstance(read_json(RunDir.for_id(run_id).config_path), dict)
        if state in ("stopped", "interrupted", "failed") and not is_stage and not damaged and cols[1].button(
                "▶ Resume", key=f"resume_{run_id}"):
            jobs.resume(run_id)
            st.rerun()
        if state not in ("running", "stopping") and not is_stage:
            with cols[2].popover("🗑 Delete"):
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
        child = RunDir.for_id(f"{run_id}.{stage}")
        child_status = child.status()
        if child_status:
            st.caption(f"Stage {stage}: {child.run_id}")
            progress(child_status, child_status.get("state", "?"))
    if status.get("stages"):
        st.caption("Stages: " + " → ".join(f"{k} ({v.get('state')})" for k, v in status["stages"].items()))
    if status.get("stages") and any(v.get("state") == "completed" for v in status["stages"].values()):
        st.page_link("pages/transfer.py", label="Its comparison table, on the Transfer page", icon="🔁",
                     query_params={"pipeline": run_id})
    if state == "completed" and run.has_model():
        st.page_link("pages/train.py", label="Fine-tune this model further (Train page)", icon="🏋️",
                     query_params={"init_from": run_id})
    if status.get("metrics"):
        st.json(status["metrics"], expanded=False)
    with st.expander("Config"):
        raw = run.config_path.read_text(errors="replace") if run.config_path.exists() else ""
        try:
            st.code(json.dumps(json.loads(raw), indent=2), language="json")
        except ValueError:  # a damaged config.json is shown as it is
            st.code(raw or "(no config.json)")
    with st.expander("Log (last 40 lines)"):
        lines = run.log_path.read_text(errors="replace").splitlines()[-40:] if run.log_path.exists() else []
        st.code("\n".join(lines) or "(empty)")


def live_view() -> None:
    """Reread the run folders; while any selected run is active this fragment reruns itself."""
    if len(selected) > 1:
        comparison()
    runs = [RunDir.for_id(i) for i in selected]
    frames = {}
    for run in runs:
        frames[run.run_id] = metrics_frame(run)
        for stage in ("source", "target", "baseline"):  # a pipeline's curves are its stages' curves
            child = RunDir.for_id(f"{run.run_id}.{stage}")
            if child.path.exists():
                frames[child.run_id] = metrics_frame(child)
    frames = {k: v for k, v in frames.items() if not v.empty}
    if frames:
        x = st.radio("x axis", ["step", "epoch"], horizontal=True, key="runs_x")
        charts = list(CHARTS.items())
        for i in range(0, len(charts), 2):
            cols = st.columns(2)
            for col, (title, (column, markers)) in zip(cols, charts[i:i + 2]):
                col.plotly_chart(curve_figure(frames, column, title, x=x, markers=markers), width="stretch",
                                 key=f"chart_{column}")
    else:
        st.caption("No metrics yet: curves appear with the first logged steps.")
    for run in runs:
        details(run.run_id)
    now_active = any(run.status().get("state") in ACTIVE_STATES for run in runs)
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
was_active = any(by_id[i]["state"] in ACTIVE_STATES for i in selected)
st.fragment(live_view, run_every=REFRESH_S if was_active else None)()
