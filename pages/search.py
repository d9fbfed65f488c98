"""Search: an Optuna hyperparameter search launched from a form built from RunConfig's fields, its trials live."""

import dataclasses

import pandas as pd
import streamlit as st

from core import jobs
from core.cli import parse_assignments
from core.config import PRESETS, ConfigError, RunConfig, field_kind, load_preset
from core.runs import ACTIVE_STATES, RunDir
from core.search import DEFAULT_SPACE, NOT_SEARCHABLE, SearchConfig, open_study, parse_spec, read_results
from pages.common import STATE_ICONS, live, runs_of, setting_widgets, show_error, through_router

through_router(__file__)
st.title("Search")
st.caption("Each trial is an ordinary background run (its own folder, live curves, stop and resume); the search asks "
           "Optuna for the next settings and stops trials whose validation figures trail the earlier ones.")
FIELDS = {f.name: f for f in dataclasses.fields(RunConfig) if f.name not in NOT_SEARCHABLE
          and field_kind(RunConfig, f)[0] in (int, float, str, bool) and f.metadata.get("group") != "custom"}


def default_spec(name: str, base: RunConfig) -> str:
    """A range to start from: the default space's, else around the preset's value, else the field's choices."""
    if name in DEFAULT_SPACE:
        return DEFAULT_SPACE[name]
    f = FIELDS[name]
    tp, _ = field_kind(RunConfig, f)
    current = getattr(base, name)
    if "choices" in f.metadata:
        return ",".join(map(str, f.metadata["choices"][:3]))
    if tp is bool:
        return "true,false"
    if tp is int:
        return f"int:{max(1, (current or 1) // 2)}:{max(2, (current or 1) * 2)}"
    return f"{(current or 0.1) / 3:.3g}:{(current or 0.1) * 3:.3g}:log"


def range_widget(name: str, spec: str) -> str:
    """One field's range as widgets: two bounds (and log scale) for a number, a list for choices. Returns its SPEC."""
    dim = parse_spec(name, spec)
    label = FIELDS[name].metadata.get("label") or name
    cols = st.columns([2, 2, 2, 1])
    cols[0].markdown(f"**{label}**  \n`{name}`", help=FIELDS[name].metadata.get("help"))
    if dim.scale == "choice":
        options = list(FIELDS[name].metadata.get("choices") or dim.choices)
        picked = cols[1].multiselect("choices", options, default=[c for c in dim.choices if c in options],
                                     key=f"search_{name}_choices", label_visibility="collapsed")
        extra = cols[2].text_input("more choices", value=",".join(str(c) for c in dim.choices if c not in options),
                                   key=f"search_{name}_more", placeholder="more, comma-separated",
                                   label_visibility="collapsed")
        return ",".join([str(p) for p in picked] + [e.strip() for e in extra.split(",") if e.strip()])
    integer = dim.scale == "int"
    fmt = None if integer else ("%.1e" if dim.log else "%.3f")
    low = cols[1].number_input("low", value=dim.low, key=f"search_{name}_low", format=fmt)
    high = cols[2].number_input("high", value=dim.high, key=f"search_{name}_high", format=fmt)
    log = cols[3].checkbox("log", value=dim.log, key=f"search_{name}_log")
    return f"{'int:' if integer else ''}{low}:{high}" + (":log" if log else "")


# -- the form -----------------------------------------------------------------------------------------
with st.expander("New search", expanded=not runs_of("search")):
    c1, c2, c3 = st.columns(3)
    preset_name = c1.selectbox("Preset the trials start from", list(PRESETS), key="search_preset",
                               index=list(PRESETS).index("offline-quick"))
    stage = c2.radio("Stage searched", ["source", "target"], horizontal=True, key="search_stage",
                     help="target: the source model is trained once and every trial starts from it.")
    base = load_preset(preset_name)
    stage_base = base.source if stage == "source" else base.target
    chosen = c3.multiselect("Fields to vary", list(FIELDS), default=[n for n in DEFAULT_SPACE if n in FIELDS],
                            key="search_fields", format_func=lambda n: FIELDS[n].metadata.get("label") or n)
    specs, errors = {}, []
    for name in chosen:
        try:
            specs[name] = range_widget(name, default_spec(name, stage_base))
            parse_spec(name, specs[name])  # as the user set it: named here, before anything is launched
        except (ConfigError, ValueError) as exc:
            errors.append(str(exc))
    field_errors: dict[str, str] = st.session_state.get("search_errors", {})
    with st.form("search_form"):
        values = setting_widgets(SearchConfig, None, "more", field_errors, key_prefix="search_")
        sets = st.text_area("Other settings for every trial (FIELD=VALUE, one a line; target.FIELD for the target)",
                            key="search_sets", height=80, placeholder="max_train_samples=2000\nepochs=1")
        submitted = st.form_submit_button("🔎 Launch search", type="primary")
    if submitted:
        try:
            if errors:
                raise ValueError(errors[0])
            pcfg = base.with_overrides(parse_assignments([s.strip() for s in sets.splitlines() if s.strip()]))
            cfg = SearchConfig(base=pcfg.to_dict(), space=specs, stage=stage, **values)
            run = jobs.launch("search", cfg)
            st.query_params["search"] = run.run_id
            st.session_state["search_pick"] = run.run_id  # the picker below shows the new search
            st.session_state["search_errors"] = {}
            st.rerun()
        except ConfigError as exc:
            if exc.field in values:  # beside its field, after the rerun
                st.session_state["search_errors"] = {exc.field: str(exc)}
                st.rerun()
            show_error(exc)
        except ValueError as exc:
            show_error(exc)
    elif errors:
        show_error(ValueError(errors[0]))

# -- a search, live -----------------------------------------------------------------------------------
searches = runs_of("search")
if not searches:
    st.info("No searches yet: launch one above, or `python -m core search --preset offline-quick --trials 8`.")
    st.stop()
ids = [r["id"] for r in searches]
asked = st.query_params.get("search")
search_id = st.selectbox("Search", ids, index=ids.index(asked) if asked in ids else 0, key="search_pick",
                         format_func=lambda i: f"{i} · {next(r['name'] for r in searches if r['id'] == i)}".rstrip(" ·"))
if search_id != asked:
    st.query_params["search"] = search_id
active = next(r for r in searches if r["id"] == search_id)["state"] in ACTIVE_STATES


def show(search_id: str) -> None:
    search = RunDir.for_id(search_id)
    status = search.status()
    state = status.get("state", "?")
    out = read_results(search)
    counts = status.get("trials") or {}
    st.markdown(f"#### {STATE_ICONS.get(state, '')} {search_id} · {state}")
    if status.get("error"):
        st.error(status["error"])
    st.progress(min((status.get("step") or 0) / max(out["trials_wanted"], 1), 1.0),
                text=f"{counts.get('finished', 0)} of {out['trials_wanted']} trials finished · "
                     f"{counts.get('completed', 0)} completed, {counts.get('pruned', 0)} pruned, "
                     f"{counts.get('failed', 0)} failed · {out['metric']} ({out['direction']})")
    if status.get("phase") and state in ACTIVE_STATES:
        st.caption(f"Now: {status['phase']}")
    best = out["best"]
    if best:
        b1, b2 = st.columns([3, 1])
        b1.success(f"Best: trial {best['number'] + 1} ({best['run_id']}), {out['metric']} {best['value']:.4f}: "
                   + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items()))
        b2.page_link("pages/train.py", label="Train with the best settings", icon="🏋️",
                     query_params={"from_run": best["run_id"]})
    frame = pd.DataFrame([{
        "trial": t["number"] + 1, "run": f"/runs?run={t['run_id']}" if t["run_id"] else None,
        "state": f"{STATE_ICONS.get(t['run_state'] or '', '')} {t['state']}" + (
            f" (run {t['run_state']})" if t["run_state"] in ACTIVE_STATES else ""),
        out["metric"]: t["value"], **{k: v for k, v in t["params"].items()}} for t in out["trials"]])
    if not frame.empty:
        st.dataframe(frame, hide_index=True, width="stretch", key=f"trials_{search_id}", column_config={
            "run": st.column_config.LinkColumn("run", display_text=r"/runs\?run=(.*)"),
            out["metric"]: st.column_config.NumberColumn(format="%.4f")})
    figures(search, out)


def figures(search: RunDir, out: dict) -> None:
    """Optuna's own Plotly figures, once there is something to draw."""
    import optuna.visualization as ov

    done = [t for t in out["trials"] if t["state"] == "complete"]
    if not done:
        st.caption("The charts appear once a trial has completed.")
        return
    study = open_study(search.run_id, SearchConfig.from_dict(search.config()))
    charts = [("Optimization history", ov.plot_optimization_history),
              ("Validation figures at each evaluation (pruned trials stop early)", ov.plot_intermediate_values)]
    if out["trials"] and out["trials"][0]["params"]:
        charts.append(("Parallel coordinates", ov.plot_parallel_coordinate))
    if len(done) >= 3 and len(out["trials"][0]["params"]) > 1:
        charts.append(("Parameter importances", ov.plot_param_importances))
    cols = st.columns(2)
    for i, (title, plot) in enumerate(charts):
        try:
            fig = plot(study)
        except (ValueError, RuntimeError) as exc:  # too few trials for this chart yet
            cols[i % 2].caption(f"{title}: {exc}")
            continue
        fig.update_layout(title=title, height=360, margin=dict(l=10, r=10, t=40, b=10))
        cols[i % 2].plotly_chart(fig, width="stretch", key=f"{search.run_id}_{i}")


live(show, active)(search_id)
