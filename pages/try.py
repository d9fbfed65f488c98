"""Try a review: one text, several models, side by side; or a batch from a file or pasted lines."""

import pandas as pd
import streamlit as st

from core.data import skipped_note, text_columns
from core.config import Reading
from core.predictor import MAX_EXPLAINED_WORDS, check_review
from core.pipeline import STAGE_ROLES, read_results
from core.runs import STAGES, RunDir
from pages.common import (models_available, predictor_for, read_upload, runs_of, runs_table, show_error, through_router,
                          upload_limit, word_effects_html)

through_router(__file__)
st.title("Try a review")
rows = runs_table()
models = models_available(rows)
if not models:
    st.info("No trained model yet: finish a run on the Train page first.")
    st.stop()


def pipeline_models() -> list[str]:
    """The newest completed pipeline's zero-shot (stage 1) and fine-tuned (stage 2) models, and its target-only
    baseline where it trained one: the comparison table's three models, on the user's own review."""
    for r in runs_of("pipeline", rows):  # a finished one's results.json: no stage folder is read on a rerun
        if r["state"] == "completed" and read_results(RunDir.for_id(r["id"]))["rows"]:
            source, target, baseline = (RunDir.for_id(r["id"]).stage(s).run_id for s in STAGES)
            if source in models and target in models:
                return [source, target] + [baseline] * (baseline in models)
    return []


names = {r["id"]: r.get("name") or "" for r in rows}


def model_role(run_id: str) -> str:
    """What a model is, in words: a pipeline stage's role, else the run's name."""
    parent, _, stage = run_id.rpartition(".")
    return (STAGE_ROLES.get(stage) if parent else None) or names.get(run_id) or "model"


def model_title(run_id: str) -> str:
    return f"{model_role(run_id)} ({run_id})"


OWN = "own"
BATCH_LIMIT = 10_000  # reviews the batch box classifies; more go through `python -m core predict`
chosen = st.multiselect("Models", models, default=pipeline_models() or models[:1], key="try_models",
                        format_func=model_title,
                        help="Stage-1 (source) models answer zero-shot; stage-2 (target) models after fine-tuning.")
# A pipeline's table scores the source model on the target zero-shot the way the target stage reads
# reviews, so "as <id>.target reads" puts the two side by side exactly as the table compared them.
read_as = OWN
if len(chosen) > 1:
    readings = {run_id: Reading.load(RunDir.for_id(run_id).model_dir).label() for run_id in chosen}
    stage2 = [r for r in chosen if r.endswith(".target") and r.removesuffix(".target") + ".source" in chosen]
    options = [OWN, *chosen]
    read_as = st.selectbox("Read the review", options, index=options.index(stage2[0]) if stage2 else 0,
                           format_func=lambda o: "as each model was trained to" if o == OWN else f"as {o} does: {readings[o]}",
                           key="try_read_as", help="The same reading for every model compares the models, not their "
                           "reading; a pipeline's zero-shot row read the target the way its stage-2 model does.")


def predictor(run_id: str):
    own = predictor_for(run_id)
    return own if read_as in (OWN, run_id) else own.reading_as(predictor_for(read_as).reading)


def answer(run_id: str, text: str):
    """One model and its answer to the review, or the ValueError that kept the model from answering."""
    try:
        model = predictor(run_id)
        return model, model.predict([text])[0]
    except ValueError as exc:
        return exc


def effects_of(model, text: str):
    """The model's word effects, or why there are none (a review too long to explain still has its answer)."""
    try:
        return model.word_effects(text)
    except ValueError as exc:
        return exc


# A form: typing the review does not rerun the page, and the click sends the text with it (one run, not two).
with st.form("try_form", border=False):
    text = st.text_area("Review", height=140, key="try_text",
                        placeholder="The plot dragged, but the last half hour was wonderful.")
    explain = st.checkbox("Which words moved each model", key="try_explain",
                          help=f"Each word left out in turn, the review scored again: green words pushed towards "
                               f"positive, red towards negative (hover for the change in P(positive)). Up to "
                               f"{MAX_EXPLAINED_WORDS} words; one pass per word, so it takes a moment.")
    classify = st.form_submit_button("Classify", type="primary", key="try_go")

if classify:
    try:
        check_review(text)
        if not chosen:
            raise ValueError("models: pick at least one model")
        answers = {run_id: answer(run_id, text) for run_id in chosen}
        # Every answer is on the page before any word effect is computed (one pass per word: the slow part).
        shaded = {}
        for col, run_id in zip(st.columns(len(chosen)), chosen):
            with col:
                if isinstance(answers[run_id], Exception):
                    show_error(answers[run_id])
                    continue
                model, result = answers[run_id]
                st.markdown(f"**{model_role(run_id).capitalize()}**")
                st.caption(f"{run_id} · {model.scoring}")
                st.metric(result["label"], f"{result['probability']:.1%}")
                st.progress(result["p_positive"], text=f"P(positive) = {result['p_positive']:.3f}")
                shaded[run_id] = st.empty()
        if explain:
            effects = {run_id: effects_of(answers[run_id][0], text) for run_id in shaded}
            # One colour scale for every model's words, so the shades compare across the columns.
            scale = max((abs(e) for found in effects.values() if isinstance(found, list) for _, e in found), default=0.0)
            for run_id, found in effects.items():
                with shaded[run_id].container():
                    if isinstance(found, Exception):
                        show_error(found)
                    else:
                        st.markdown(word_effects_html(found, scale), unsafe_allow_html=True)
    except ValueError as exc:
        show_error(exc)

st.divider()
st.subheader("Batch")
mode = st.radio("Input", ["Paste lines", "Upload a file"], horizontal=True, key="batch_mode")
texts: list[str] = []
rows: list[int] = []  # each review's line (from 1) or file row (from 0), so the predictions line up with them
if mode == "Paste lines":
    pasted = st.text_area("One review per line", key="batch_text", height=120)
    lines = pasted.splitlines()
    rows = [i + 1 for i, line in enumerate(lines) if line.strip()]
    texts = [lines[i - 1].strip() for i in rows]
else:
    upload = st.file_uploader(f"CSV, parquet or JSONL ({upload_limit()})", type=["csv", "parquet", "jsonl"],
                              key="batch_file")
    if upload is not None:
        try:
            frame = read_upload(upload.name, upload.getvalue())
            column = st.selectbox("Text column", text_columns(frame), key="batch_col")
            cells = [str(t) for t in frame[column].fillna("").tolist()]
            rows = [i for i, t in enumerate(cells) if t.strip()]
            texts = [cells[i] for i in rows]
            empty = skipped_note([i for i, t in enumerate(cells) if not t.strip()], f"{upload.name}:{column}")
            if empty:
                st.caption(f"{empty}; rows count from 0.")
        except ValueError as exc:
            show_error(exc)
if len(texts) > BATCH_LIMIT:  # minutes of CPU per thousand reviews and model: the command line is for more
    st.warning(f"{len(texts):,} reviews: the first {BATCH_LIMIT:,} are classified here; for all of them, "
               "`python -m core predict --run RUN_ID < reviews.txt` (one per line).")
    rows, texts = rows[:BATCH_LIMIT], texts[:BATCH_LIMIT]
if texts and chosen and st.button(f"Classify {len(texts)} reviews", key="batch_go"):
    try:
        table = pd.DataFrame({"line" if mode == "Paste lines" else "row": rows, "text": texts})
        for run_id in chosen:
            results = predictor(run_id).predict(texts)
            table[f"{run_id} label"] = [r["label"] for r in results]
            table[f"{run_id} P(positive)"] = [round(r["p_positive"], 4) for r in results]
        st.dataframe(table, hide_index=True, width="stretch")
        st.download_button("Download CSV", table.to_csv(index=False).encode(), "predictions.csv", "text/csv",
                           key="batch_download")
    except ValueError as exc:
        show_error(exc)
