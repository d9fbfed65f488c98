"""Overview: what this is, recent runs, one button for the transfer pipeline."""

import streamlit as st

from core import jobs
from core.config import PRESETS, load_preset
from core.modeling import device_summary
from core.paths import hub_reachable
from core.pipeline import ROW_NAMES, ROW_TITLES, points, read_results
from core.runs import ACTIVE_STATES, RunDir
from pages.common import RUNS_COLUMNS, live, runs_frame, runs_of, runs_table, show_error, through_router

through_router(__file__)
st.title("Sentiment Transfer Lab")
st.markdown(
    "Fine-tune a transformer sentiment classifier on **Amazon reviews**, carry it to **IMDB** movie reviews, "
    "and see what the transfer did. Runs train in the background, so you can close this tab and come back. "
    "The Transfer page compares zero-shot, fine-tuned and a target-only baseline, and Try a review puts the "
    "models side by side. Any finished model can also be scored zero-shot on other data from its details on the "
    "Runs page, or fine-tuned further from there."
)


def suggested_preset() -> str:
    """The seed preset needs a GPU and the Hub; everywhere else the offline preset fits the machine."""
    return "seed" if device_summary()["device"] == "cuda" and hub_reachable() else "offline-quick"


preset = suggested_preset()
st.subheader("Run the transfer pipeline")
st.caption(f"Preset for this machine: **{preset}**: {PRESETS[preset].get('description', '')}")
if st.button(f"▶ Start the transfer pipeline ({preset})", type="primary", key="start_pipeline"):
    try:
        st.session_state["overview_launched"] = jobs.launch("pipeline", load_preset(preset)).run_id
        st.rerun()  # so the sidebar's queue and the table below show it at once
    except ValueError as exc:
        show_error(exc)
if st.session_state.get("overview_launched"):
    run_id = st.session_state["overview_launched"]
    st.success(f"Queued pipeline {run_id}. It runs in the background: you can close this tab.")
    st.page_link("pages/runs.py", label="Watch it on the Runs page", icon="📈", query_params={"run": run_id})


def recent_runs() -> None:
    rows = [r for r in runs_table() if not r.get("parent")][:10]
    if rows:
        st.dataframe(runs_frame(rows), hide_index=True, width="stretch", column_config=RUNS_COLUMNS)
    else:
        st.info("No runs yet. Start the pipeline above, or set up a single run on the Train page.")


def latest_transfer(rows: list[dict]) -> None:
    """The newest finished pipeline's five figures at a glance, each against what it is compared with."""
    done = [r for r in runs_of("pipeline", rows) if r["state"] == "completed"]
    results = read_results(RunDir.for_id(done[0]["id"])) if done else None
    by = {r["name"]: r for r in (results or {}).get("rows", [])}
    if not by:
        return
    st.subheader("The latest transfer")
    short = {"source": "Source", "target_zero_shot": "Target zero-shot", "target_finetuned": "Target fine-tuned",
             "source_after_target": "Source after target", "target_only_baseline": "Target-only baseline"}
    compared_with = {"target_finetuned": "target_zero_shot", "target_only_baseline": "target_finetuned",
                     "source_after_target": "source"}
    for col, name in zip(st.columns(len(by)), [n for n in ROW_NAMES if n in by]):
        other = by.get(compared_with.get(name, ""))
        # The baseline's delta is against fine-tuned: negative means the transfer helped.
        col.metric(short[name], f"{by[name]['accuracy']:.4f}",
                   delta=f"{points(by[name]['accuracy'] - other['accuracy'])} points" if other else None,
                   help=f"{by[name]['dataset']}:{by[name]['split']}, n={by[name]['n']}"
                        + (f"; the change is against {ROW_TITLES[compared_with[name]].lower()}" if other else ""))
    st.page_link("pages/transfer.py", label=f"The whole comparison ({done[0]['id']}), on the Transfer page", icon="🔁",
                 query_params={"pipeline": done[0]["id"]})


rows = runs_table()  # once for this run of the page; the live table below rereads on its own schedule
latest_transfer(rows)
st.subheader("Recent runs and pipelines")
busy = any(r["state"] in ACTIVE_STATES for r in rows)
live(recent_runs, busy)()  # live while something runs
