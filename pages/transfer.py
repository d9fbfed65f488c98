"""Transfer: the comparison table of a pipeline, confusion matrices, calibration, the reviews that flipped; and the
data-efficiency curve."""

import json

import pandas as pd
import streamlit as st

from core.pipeline import (ROW_TITLES, read_results, flipped_predictions, forgetting_by_group, other_sources_scores,
                           points, results_markdown, row_gaps, row_warnings)
from core import jobs
from core.config import PRESETS, ConfigError, load_preset
from core.curve import STARTS, CurveConfig, curve_csv, preset_curve, read_results as curve_results
from core.runs import ACTIVE_STATES, RunDir
from pages.common import (confusion_figure, efficiency_figure, live, predictor_for, reliability_figure, run_name, runs_of,
                          setting_widgets, show_error, through_router, transfer_figure)


def in_points(delta: float) -> str:
    return f"{points(delta)} points"  # not '+4.60%', which would read as a relative change


through_router(__file__)
st.title("Transfer")
tab_table, tab_curve = st.tabs(["The comparison table", "What transfer buys: the data-efficiency curve"])


def comparison() -> None:
    pipelines = runs_of("pipeline")
    if not pipelines:
        st.info("No pipeline yet. Start one from the Overview or Train page.")
        return
    by_id = {r["id"]: r for r in pipelines}
    linked = st.query_params.get("pipeline")
    choice = st.selectbox("Pipeline", list(by_id), index=list(by_id).index(linked) if linked in by_id else 0,
                          format_func=lambda i: run_name(by_id[i]), key="transfer_pipeline")  # no state: see runs.py
    st.query_params["pipeline"] = choice
    pipe = RunDir.for_id(choice)
    # A pipeline still running (or stopped part-way) shows the rows it has so far; the page writes nothing.
    results = read_results(pipe)
    if not results or not results["rows"]:
        st.info(f"No results yet: the pipeline is {by_id[choice]['state']}.")
        return
    figures(results, choice)
    by_group_section(results["rows"])
    per_row_charts(results["rows"])
    flipped_section(pipe)
    other_sources_section(pipe, choice)


def figures(results: dict, choice: str) -> None:
    """The table, its chart, what it says in words, and its downloads."""
    by = {r["name"]: r for r in results["rows"]}
    zs, bl = by.get("target_zero_shot"), by.get("target_only_baseline")
    # The figures first, then where they come from: "scored as" can be long and must not push accuracy off screen.
    table = pd.DataFrame([{
        "row": ROW_TITLES[r["name"]], "accuracy": r["accuracy"], "F1": r["f1"],
        **dict(zip(("vs zero-shot (points)", "vs baseline (points)"), row_gaps(r, results["rows"]))),
        "n": r["n"], "ECE raw": r.get("ece_uncalibrated"), "ECE calibrated": r.get("ece"),
        "data": f"{r['dataset']}:{r['split']}", "scored as": r.get("scored_as", ""),
    } for r in results["rows"]])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "accuracy": st.column_config.NumberColumn(format="%.4f"), "F1": st.column_config.NumberColumn(format="%.4f"),
        "ECE raw": st.column_config.NumberColumn(format="%.4f", help="Expected calibration error, 15 bins, before the "
                                                                     "model's temperature"),
        "ECE calibrated": st.column_config.NumberColumn(format="%.4f", help="After the temperature fitted on the "
                                                                            "model's validation split")})
    st.plotly_chart(transfer_figure(results["rows"], ROW_TITLES), width="stretch", key="transfer_bars")
    src, after = by.get("source"), by.get("source_after_target")
    for warning in row_warnings(results["rows"]):
        st.warning(warning)
    notes = []
    if zs and by.get("target_finetuned"):
        notes.append(f"Fine-tuning on the target moved target accuracy by {in_points(by['target_finetuned']['accuracy'] - zs['accuracy'])}.")
    if bl and by.get("target_finetuned"):
        gain = by["target_finetuned"]["accuracy"] - bl["accuracy"]
        notes.append(f"Against a target-only model with the same budget, the transfer {'helped' if gain > 0 else 'did not help'} ({in_points(gain)}).")
    if src and after:
        change = after["accuracy"] - src["accuracy"]
        verdict = "forgetting" if change < 0 else "no forgetting"
        notes.append(f"Source accuracy moved by {in_points(change)} after target training ({verdict}).")
    st.markdown(" ".join(notes))
    st.caption(f"Wall time: {results['wall_s']:.0f} s")
    # For a report: the table as the pipeline's results.md / results.json have it (built here, so rows so far too).
    d1, d2, _ = st.columns([1, 1, 2])
    d1.download_button("The table as Markdown", results_markdown(results), f"{choice}-results.md", "text/markdown",
                       key="transfer_download_md", icon=":material/download:", width="stretch")
    d2.download_button("The table as JSON", json.dumps(results, indent=2), f"{choice}-results.json",
                       "application/json", key="transfer_download_json", icon=":material/download:", width="stretch")


def by_group_section(rows: list) -> None:
    """Forgetting per product domain (or the data's other grouping column)."""
    by_group = forgetting_by_group(rows)
    if by_group:
        field = by_group[0]["field"]
        st.subheader(f"Source accuracy by {field}, before and after target training")
        st.dataframe(pd.DataFrame(by_group).drop(columns="field").rename(
            columns={"group": field, "change": "change (points)"}), hide_index=True, width="stretch",
            column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("before", "after")})


def per_row_charts(rows: list) -> None:
    """Each row's confusion matrix and reliability diagram."""
    st.subheader("Confusion matrices")
    with_cm = [r for r in rows if r.get("confusion")]
    for i in range(0, len(with_cm), 3):
        cols = st.columns(3)
        for col, r in zip(cols, with_cm[i:i + 3]):
            col.plotly_chart(confusion_figure(r["confusion"], ROW_TITLES[r["name"]]), width="stretch", key=f"cm_{r['name']}")

    st.subheader("How far to trust a probability")
    st.caption("Each row's confidence against its accuracy, in 15 bins: on the diagonal a model is right as often as it "
               "says; below it, over-confident. Each model's temperature is fitted on its own validation split.")
    with_rel = [r for r in rows if r.get("reliability")]
    for i in range(0, len(with_rel), 3):
        cols = st.columns(3)
        for col, r in zip(cols, with_rel[i:i + 3]):
            col.plotly_chart(reliability_figure(r, ROW_TITLES[r["name"]]), width="stretch", key=f"rel_{r['name']}")


def flipped_section(pipe: RunDir) -> None:
    st.subheader("Target reviews that flipped between zero-shot and fine-tuned")
    flips = flipped_predictions(pipe)
    if flips.empty:
        st.caption("None (or the stages have not both finished).")
    else:
        st.caption(f"{len(flips)} flipped; {int(flips['fixed'].sum())} now right, {int((~flips['fixed']).sum())} now wrong.")
        st.dataframe(flips, hide_index=True, width="stretch", column_config={
            "p_positive_zero_shot": st.column_config.NumberColumn("P(pos) zero-shot", format="%.3f"),
            "p_positive_finetuned": st.column_config.NumberColumn("P(pos) fine-tuned", format="%.3f")})


def other_sources_section(pipe: RunDir, choice: str) -> None:
    """The pipeline's models on short reviews from other sources, on request."""
    st.subheader("Beyond the two domains")
    st.caption("60 short reviews from sources neither stage trained on: restaurants, hotels, apps, video games, airlines "
               "and music, 5 positive and 5 negative each (written for this lab; a smoke test, where one review is "
               "1.7 points).")
    scored = st.session_state.setdefault("other_sources", {})
    if st.button("Score the pipeline's models on them", key="other_sources_go"):
        try:
            with st.spinner("Scoring…"):
                scored[choice] = other_sources_scores(pipe, predictor_for=predictor_for)
        except Exception as exc:  # noqa: BLE001 - a missing or unreadable model: say which, keep the page
            show_error(exc)
    if choice in scored and not scored[choice]:
        st.info("None of this pipeline's stages has a trained model yet.")
    elif scored.get(choice):
        models = scored[choice]
        by_source = pd.DataFrame([{"model": m["role"], "accuracy": m["accuracy"], **m["by_source"]} for m in models])
        st.dataframe(by_source, hide_index=True, width="stretch", column_config={
            "accuracy": st.column_config.NumberColumn(format="%.3f"),
            **{s: st.column_config.NumberColumn(format="%.1f") for s in by_source.columns[2:]}})
        for m in models:
            with st.expander(f"{m['role']}: {len(m['wrong'])} wrong"):
                st.dataframe(pd.DataFrame(m["wrong"]).rename(columns={"label": "true label", "p_positive": "P(positive)"}),
                             hide_index=True, width="stretch")



def efficiency() -> None:
    """The curve: accuracy against target labels, from the source model and from the pretrained one."""
    with st.expander("Start a curve", expanded=not runs_of("curve")):
        # The preset is chosen outside the form: its budgets and seeds, sized for its machine, fill the form.
        preset = st.selectbox("Preset", list(PRESETS), index=list(PRESETS).index("offline-quick"), key="curve_preset")
        errors: dict[str, str] = st.session_state.get("curve_errors", {})
        with st.form("curve_form"):
            values = setting_widgets(CurveConfig, preset_curve(preset), "more", errors, key_prefix=f"curve_{preset}_",
                                     columns=4)
            if st.form_submit_button("📈 Start the curve", type="primary"):
                try:
                    job = jobs.launch("curve", CurveConfig(base=load_preset(preset).to_dict(), **values))
                    st.query_params["curve"] = job.run_id
                    st.session_state["curve_pick"] = job.run_id
                    st.session_state["curve_errors"] = {}
                except ConfigError as exc:
                    st.session_state["curve_errors"] = {exc.field: str(exc)}
                    st.rerun()
                except ValueError as exc:
                    show_error(exc)
    curves = runs_of("curve")
    if not curves:
        st.info("No curve yet: start one above, or `python -m core curve --preset offline-quick`.")
        return
    ids = [r["id"] for r in curves]
    asked = st.query_params.get("curve")
    chosen = st.selectbox("Curve", ids, index=ids.index(asked) if asked in ids else 0, key="curve_pick",
                          format_func=lambda i: run_name(next(r for r in curves if r["id"] == i)))
    active = next(r for r in curves if r["id"] == chosen)["state"] in ACTIVE_STATES
    live(show_curve, active)(chosen)


def show_curve(curve_id: str) -> None:
    job = RunDir.for_id(curve_id)
    state = job.status().get("state", "?")
    results = curve_results(job)
    done, total = job.status().get("step") or 0, job.status().get("total_steps") or 0
    st.caption(f"{state} · {done} of {total} stages done" + (f" · now {job.status().get('stage')}"
                                                            if state in ACTIVE_STATES else ""))
    if not results["points"]:
        st.info("No point yet: the source stage and the first budget come first.")
        return
    st.markdown(f"**{results['crossover']['text'].capitalize()}.**")
    st.plotly_chart(efficiency_figure(results), width="stretch", key=f"curve_{curve_id}",
                    config={"toImageButtonOptions": {"format": "png", "filename": f"{curve_id}-curve", "scale": 2}})
    table = pd.DataFrame([{"labels": r["labels"], "start": STARTS[r["start"]], "mean accuracy": r["mean"],
                           "min": r["min"], "max": r["max"], "seeds": r["seeds"]} for r in results["summary"]])
    st.dataframe(table, hide_index=True, width="stretch", key=f"curve_table_{curve_id}",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("mean accuracy", "min", "max")})
    st.download_button("Every point as CSV", curve_csv(results), f"{curve_id}-points.csv", "text/csv",
                       key=f"curve_csv_{curve_id}", icon=":material/download:")
    st.caption("The chart downloads as PNG from its toolbar (the camera).")


with tab_table:
    comparison()
with tab_curve:
    efficiency()
