"""What the pages share: cached loaders, charts, run labels. All work is in `core`; this only displays it."""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import os
import time
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import jobs, kinds
from core.config import field_default, field_kind
from core.data import read_table_bytes
from core.predictor import Predictor
from core.runs import ACTIVE_STATES, STAGES, MetricsTail, RunDir, headline

STATE_ICONS = {"queued": "⏳", "running": "🏃", "stopping": "✋", "stopped": "⏸️", "completed": "✅",
               "failed": "❌", "interrupted": "⚠️", "cancelled": "🚫", "pruned": "✂️"}
REFRESH_S = 2.0  # live views reread the run folder this often while a run is active
ROUTED_KEY, WANTED_KEY = "_routed_by_app", "_wanted_page"
# The app's pages, one place for app.py's st.navigation and for through_router: (file, title, icon, URL path).
PAGES = [("pages/overview.py", "Overview", "🏠", ""), ("pages/train.py", "Train", "🏋️", "train"),
         ("pages/runs.py", "Runs", "📈", "runs"), ("pages/search.py", "Search", "🔎", "search"),
         ("pages/transfer.py", "Transfer", "🔁", "transfer"),
         ("pages/try.py", "Try a review", "💬", "try")]


def through_router(page_file: str) -> None:
    """Make sure this page runs inside the router (app.py), even on a server started a moment ago.

    Until some session has run app.py's `st.navigation`, Streamlit still treats `pages/` as a legacy
    multipage folder, and a browser that reopens `/runs?run=...` after the app restarts gets
    pages/runs.py alone: no sidebar, no queue, no wide layout. Such a run hands over to app.py,
    which then opens the page that was asked for, with its query parameters.
    """
    if st.session_state.get(ROUTED_KEY):
        return
    url_path = next(url for file, _, _, url in PAGES if Path(file).name == Path(page_file).name)
    # every value of a repeated key (?run=a&run=b: runs compared side by side), not only the last
    st.session_state[WANTED_KEY] = (url_path, {k: st.query_params.get_all(k) for k in st.query_params})
    st.switch_page("app.py")


def live(view: Callable[..., None], active: bool) -> Callable[..., None]:
    """`view` as a fragment that reruns itself every REFRESH_S while `active` (a run it shows is queued or running).
    With SENTIMENT_LAB_TIMINGS set to a file, each of its runs appends its name and seconds there (bench/load.py)."""
    log = os.environ.get("SENTIMENT_LAB_TIMINGS")
    if log:
        inner = view

        @functools.wraps(inner)
        def view(*args: Any, **kwargs: Any) -> None:
            started = time.perf_counter()
            try:
                inner(*args, **kwargs)
            finally:
                with open(log, "a") as fh:
                    fh.write(json.dumps({"view": inner.__name__, "s": round(time.perf_counter() - started, 4),
                                         "at": time.time()}) + "\n")
    return st.fragment(view, run_every=REFRESH_S if active else None)


def runs_table() -> list[dict[str, Any]]:
    """Every run from the index (dead workers already reconciled). Cheap: reads only changed folders."""
    return jobs.list_runs()


def runs_of(kind: str, rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The runs of one kind (a page's own: the Transfer page's pipelines and curves, the Search page's searches)."""
    return [r for r in (runs_table() if rows is None else rows) if r["kind"] == kinds.get(kind).name]


def run_name(row: dict[str, Any]) -> str:
    """What a picker lists: the id and the name, never the state (a picker's label must not change under it)."""
    return f"{row['id']} · {row['name']}" if row.get("name") else row["id"]


def run_label(row: dict[str, Any]) -> str:
    return f"{STATE_ICONS.get(row['state'], '')} {run_name(row)}"


def duration(row: dict[str, Any]) -> str:
    start, end = row.get("started_at"), row.get("ended_at") or (time.time() if row["state"] in ACTIVE_STATES else None)
    if not start or not end:
        return ""
    s = int(end - start)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def runs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The runs as a table; show it with RUNS_COLUMNS (progress as a bar in whole percent, accuracy to 4 places)."""
    return pd.DataFrame([{
        "run": r["id"], "state": f"{STATE_ICONS.get(r['state'], '')} {r['state']}", "kind": r["kind"],
        "model": r.get("model") or "", "data": " → ".join(Path(d).name for d in str(r.get("dataset") or "").split(" → ")),
        "progress": None if r.get("progress") is None else round(100 * r["progress"]),
        "accuracy": headline(r.get("metrics")),
        "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started_at"])) if r.get("started_at") else "",
        "duration": duration(r),
    } for r in rows])


RUNS_COLUMNS = {"progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=100, format="%d%%"),
                "accuracy": st.column_config.NumberColumn("accuracy", format="%.4f")}


@st.cache_resource(max_entries=6, show_spinner="Loading model…")
def load_predictor(model_dir: str, stamp: float) -> Predictor:
    """One loaded model per folder version (`stamp` = the weights' mtime), shared by every session.

    Never mutated after loading: Predictor only runs inference under torch.inference_mode().
    """
    return Predictor.from_folder(model_dir, name=Path(model_dir).parent.name)


def predictor_for(run_id: str) -> Predictor:
    run = RunDir.find(run_id)
    if not run.has_model():
        raise ValueError(f"model: the model of {run_id} is missing (deleted, or the run has not finished)")
    weights = next(run.model_dir.glob("*.safetensors"))
    return load_predictor(str(run.model_dir), weights.stat().st_mtime)


def models_available(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows if kinds.get(r["kind"]).has_model and RunDir.for_id(r["id"]).has_model()]


# ---------------------------------------------------------------------------------------
CHARTS = {
    "Training loss": ("loss", False), "Validation loss": ("eval_loss", True),
    "Validation accuracy": ("eval_accuracy", True), "Learning rate": ("learning_rate", False),
    "Throughput (samples/s)": ("samples_per_s", False),
}


def metrics_frame(run: RunDir) -> pd.DataFrame:
    """metrics.jsonl as a frame, plus throughput between consecutive training log lines. Read through MetricsTail:
    a refresh parses only the lines appended since the last one."""
    frame = MetricsTail.frame(run.metrics_path)
    if frame.empty:
        return frame
    frame = frame.copy()  # the shared frame stays as read
    if "loss" in frame and "time" in frame:
        train = frame[frame["loss"].notna()].copy()
        dt, dstep = train["time"].diff(), train["step"].diff()
        batch = _effective_batch(run)
        frame.loc[train.index, "samples_per_s"] = (dstep * batch / dt).where(dt > 0)
    return frame


def curve_sources(run_ids: list[str]) -> tuple[tuple[str, int, int], ...]:
    """The metrics files behind these runs' curves (a pipeline's are its stages'), each with its size and mtime:
    what the charts are a function of."""
    found = []
    for run_id in run_ids:
        run = RunDir.for_id(run_id)
        for r in (run, *(run.stage(s) for s in STAGES)):
            try:
                stat = r.metrics_path.stat()
            except FileNotFoundError:
                continue
            found.append((r.run_id, stat.st_size, stat.st_mtime_ns))
    return tuple(found)


@st.cache_resource(max_entries=64, show_spinner=False)
def curve_points(run_id: str, size: int, mtime_ns: int) -> dict[str, pd.DataFrame]:
    """One run's points for each chart, thinned (`thinned`), as its metrics file is at (size, mtime): a finished
    100,000-step run is read and thinned once, not again each time a run beside it logs a line."""
    frame = metrics_frame(RunDir.for_id(run_id))
    points = {}
    for column, _ in CHARTS.values():
        if column in frame:
            part = frame.loc[frame[column].notna(), [c for c in ("step", "epoch", column) if c in frame]]
            points[column] = thinned(part, column)
    return points


@st.cache_resource(max_entries=32, show_spinner=False)
def curve_charts(sources: tuple[tuple[str, int, int], ...], x: str) -> tuple[dict[str, go.Figure], bool]:
    """The Runs page's charts of these metrics files as they are now, and whether validation has at most one point
    in each. Built once per change of the files, and shared by every session and tab that shows them: five tabs on
    a training run cost one chart build per logged line, not five per refresh. Never changed after it is built."""
    points = {run_id: curve_points(run_id, size, mtime) for run_id, size, mtime in sources}
    points = {k: v for k, v in points.items() if v}
    if not points:
        return {}, True
    charts = {column: curve_figure({k: v.get(column, pd.DataFrame()) for k, v in points.items()}, column, title, x=x,
                                   markers=markers)
              for title, (column, markers) in CHARTS.items()}
    one_point = all(len(v.get("eval_accuracy", ())) <= 1 for v in points.values())
    return charts, one_point


def _effective_batch(run: RunDir) -> int:
    try:
        cfg = run.config()
        return int(cfg.get("batch_size", 1)) * int(cfg.get("gradient_accumulation_steps", 1)) * int(cfg.get("num_processes", 1))
    except ValueError:
        return 1


MAX_POINTS = 2000  # per curve: a browser draws a 100,000-step log no better, and far slower


def thinned(part: pd.DataFrame, column: str, points: int = MAX_POINTS) -> pd.DataFrame:
    """At most about `points` rows of a long curve: in each of points/2 buckets of consecutive rows, the lowest and
    the highest value (the spikes a stride would drop), with the first and last rows kept."""
    if len(part) <= points:
        return part
    values = part[column].to_numpy(dtype=float)
    buckets = np.array_split(np.arange(len(part)), points // 2)
    keep = {0, len(part) - 1}
    for b in buckets:
        keep.update((b[np.argmin(values[b])], b[np.argmax(values[b])]))
    return part.iloc[sorted(keep)]


def curve_figure(frames: dict[str, pd.DataFrame], column: str, title: str, x: str = "step", markers: bool = False) -> go.Figure:
    fig = go.Figure()
    for name, frame in frames.items():
        if frame.empty or column not in frame or x not in frame:
            continue
        part = frame[frame[column].notna()]  # thinned already (curve_points)
        # A line needs two points: a run's first logged step is drawn as a marker, not as nothing.
        mode = "lines+markers" if markers or len(part) == 1 else "lines"
        fig.add_trace(go.Scatter(x=part[x], y=part[column], name=name, mode=mode))
    fig.update_layout(title=title, height=280, margin=dict(l=10, r=10, t=40, b=10), xaxis_title=x,
                      legend=dict(orientation="h", y=-0.3), showlegend=len(frames) > 1)
    if column == "eval_accuracy":
        # An accuracy lives in [0, 1]: a flat or one-point curve is not padded out to 1.5 by Plotly's autorange.
        values = [float(v) for trace in fig.data for v in trace.y]
        if values:
            lo, hi = min(values), max(values)
            pad = max(0.02, 0.1 * (hi - lo))
            fig.update_yaxes(range=[max(0.0, lo - pad), min(1.01, hi + pad)])
    else:  # losses, learning rates and throughput are never negative: no axis down to -0.5 for one point
        fig.update_yaxes(rangemode="nonnegative")
    if not fig.data:  # say so, rather than draw empty axes (validation curves wait for the first evaluation)
        fig.add_annotation(text=f"No {title.lower()} logged yet", showarrow=False, xref="paper", yref="paper",
                           x=0.5, y=0.5, font=dict(size=14, color="gray"))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return fig


def confusion_figure(confusion: list[list[int]], title: str) -> go.Figure:
    labels = ["negative", "positive"]
    fig = go.Figure(go.Heatmap(z=confusion, x=labels, y=labels, text=confusion, texttemplate="%{text}",
                               colorscale="Blues", showscale=False))
    fig.update_layout(title=title, height=260, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed")
    return fig


def reliability_figure(metrics: dict[str, Any], title: str) -> go.Figure:
    """Confidence against accuracy per bin (the diagonal: a model that is right as often as it says), raw and after
    the temperature, each bin's count on hover and in its marker's size."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0.5, 1], y=[0.5, 1], mode="lines", line=dict(dash="dot", color="grey"),
                             name="calibrated", hoverinfo="skip"))
    curves = [("raw", metrics.get("reliability_uncalibrated"), metrics.get("ece_uncalibrated")),
              ("with temperature" if metrics.get("reliability_uncalibrated") else "scored", metrics.get("reliability"),
               metrics.get("ece"))]
    for name, bins, ece in curves:
        if not bins:
            continue
        fig.add_trace(go.Scatter(
            x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
            name=f"{name} (ECE {ece:.3f})", customdata=[b["n"] for b in bins],
            marker=dict(size=[6 + 14 * (b["n"] / max(x["n"] for x in bins)) ** 0.5 for b in bins]),
            hovertemplate="confidence %{x:.3f}<br>accuracy %{y:.3f}<br>%{customdata} reviews<extra></extra>"))
    fig.update_layout(title=title, height=300, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="confidence",
                      yaxis_title="accuracy", legend=dict(orientation="h", y=-0.3), xaxis_range=[0.45, 1.02],
                      yaxis_range=[0, 1.02])
    return fig


def efficiency_figure(results: dict[str, Any]) -> go.Figure:
    """Accuracy against target labels (log axis): a line per start with its seeds' spread as a band, the zero-shot
    accuracy as a horizontal line, and where the transfer stops helping."""
    colours = {"transfer": "#d62728", "baseline": "#1f77b4"}
    names = {"transfer": "from the source model", "baseline": "from the pretrained model"}
    fig = go.Figure()
    for start in ("transfer", "baseline"):
        rows = sorted((r for r in results["summary"] if r["start"] == start), key=lambda r: r["labels"])
        if not rows:
            continue
        x = [r["labels"] for r in rows]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=[r["max"] for r in rows] + [r["min"] for r in rows][::-1],
                                 fill="toself", fillcolor=colours[start], opacity=0.15, line=dict(width=0),
                                 hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=[r["mean"] for r in rows], mode="lines+markers", name=names[start],
                                 line=dict(color=colours[start]), customdata=[[r["min"], r["max"], r["seeds"]] for r in rows],
                                 hovertemplate="%{x:,} labels: %{y:.4f} (seeds %{customdata[0]:.3f} to "
                                               "%{customdata[1]:.3f}, %{customdata[2]})<extra></extra>"))
    if results.get("zero_shot") is not None:
        fig.add_hline(y=results["zero_shot"], line=dict(dash="dash", color="grey"),
                      annotation_text=f"zero-shot {results['zero_shot']:.3f}", annotation_position="bottom right")
    if results["crossover"].get("labels"):
        fig.add_vline(x=results["crossover"]["labels"], line=dict(dash="dot", color="black"),
                      annotation_text=f"about {results['crossover']['labels']:,} labels")
    fig.update_layout(title="Target accuracy against target labels", height=420, xaxis_type="log",
                      xaxis_title="target training reviews (log scale)", yaxis_title=f"accuracy on {results.get('test')}",
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.2))
    return fig


def transfer_figure(rows: list[dict[str, Any]], titles: dict[str, str]) -> go.Figure:
    """The comparison table as bars: the target's three rows side by side (zero-shot, fine-tuned, baseline), the
    source's two (before and after target training), on an axis that starts where the differences are visible."""
    colors = {"source": "#9ecae1", "source_after_target": "#3182bd", "target_zero_shot": "#fdae6b",
              "target_finetuned": "#e6550d", "target_only_baseline": "#bdbdbd"}
    fig = go.Figure(go.Bar(
        x=[titles[r["name"]] for r in rows], y=[r["accuracy"] for r in rows], text=[f"{r['accuracy']:.4f}" for r in rows],
        textposition="outside", marker_color=[colors.get(r["name"], "#636363") for r in rows],
        hovertext=[f"{r['dataset']}:{r['split']}, n={r['n']}" for r in rows]))
    low = min(r["accuracy"] for r in rows)
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=20, b=10), yaxis_title="accuracy",
                      yaxis_range=[max(0.0, low - 0.1), 1.0])
    return fig


def word_effects_html(effects: list[tuple[str, float]], scale: float) -> str:
    """A review with each word shaded by how much it moved P(positive): green towards positive, red towards
    negative, full colour at `scale` (shared by the models side by side, so their shades compare); the exact
    push on hover. Words are escaped: a review is user text."""
    spans = []
    for word, effect in effects:
        alpha = min(abs(effect) / scale, 1.0) * 0.75 if scale > 0 else 0.0
        rgb = "0,150,60" if effect > 0 else "215,40,40"
        spans.append(f'<span title="{effect:+.3f}" style="background: rgba({rgb},{alpha:.2f}); border-radius: 3px; '
                     f'padding: 0 2px">{html.escape(word)}</span>')
    return '<div class="word-effects" style="line-height: 1.9">' + " ".join(spans) + "</div>"


@st.cache_data(max_entries=2, show_spinner="Reading the file…")
def read_upload(name: str, data: bytes) -> pd.DataFrame:
    """An uploaded table, parsed once per file rather than on every rerun of the page (a million rows take seconds)."""
    return read_table_bytes(name, data)


def upload_limit() -> str:
    """What the file uploaders say they take: Streamlit refuses a larger file before it is sent."""
    return f"up to {st.get_option('server.maxUploadSize')} MB"


def show_error(exc: Exception) -> None:
    """Bad input is a message in the page, never a stack trace."""
    st.error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, icon="⚠️")


def setting_widgets(cls: type, base: Any, group: str, errors: dict[str, str], key_prefix: str = "train_",
                    columns: int = 4) -> dict[str, Any]:
    """A widget for each field of the settings dataclass `cls` in `group`, built from the field's type and metadata
    (label, help, choices, format, what an empty value means), starting from `base`'s values (None: the fields'
    defaults); a field's error from the last launch is shown under it. Returns the values as the dataclass takes
    them (0 or "" for an optional field: None)."""
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("group", "more") == group]
    if base is None:
        base = types.SimpleNamespace(**{f.name: field_default(f) for f in fields})
    cells = st.columns(columns)
    values: dict[str, Any] = {}
    for i, f in enumerate(fields):
        (tp, optional), meta, cell = field_kind(cls, f), f.metadata, cells[i % columns]
        label = meta.get("label") or f.name.replace("_", " ").capitalize()
        if optional and meta.get("empty") and tp in (int, float):
            label += f" (0 = {meta['empty']})"
        current, key, help_ = getattr(base, f.name), key_prefix + f.name, meta.get("help")
        if tp is bool:
            value = cell.checkbox(label, value=bool(current), key=key, help=help_)
        elif "choices" in meta:  # an optional one: None first, shown as what it means
            options = ([None] if optional else []) + list(meta["choices"])
            value = cell.selectbox(label, options, index=options.index(current) if current in options else 0, key=key,
                                   help=help_, format_func=lambda o: meta.get("empty", "default") if o is None else o)
        elif tp in (int, float):
            number = cell.number_input(label, value=tp(current or 0), step=tp(meta.get("step", 1 if tp is int else 0.05)),
                                       format=meta.get("format"), key=key, help=help_)
            value = None if optional and number == 0 else tp(number)
        elif tp is list:
            text = cell.text_input(label, value=",".join(current), key=key, help=help_)
            value = [v.strip() for v in text.split(",") if v.strip()]
        else:
            text = cell.text_input(label, value=current or "", key=key, help=help_).strip()
            value = None if optional and not text else text
        if f.name in errors:
            cell.error(errors[f.name], icon="⚠️")
        values[f.name] = value
    return values
