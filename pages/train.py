"""Train: a form built from RunConfig's fields; one run or the whole pipeline, validated before launch."""

import dataclasses

import streamlit as st

from core import jobs
from core.config import GROUPS, MODEL_PRESETS, PRESETS, ConfigError, RunConfig, load_preset
from core.data import check_training_table, save_upload
from core.runs import RunDir
from pages.common import (models_available, read_upload, runs_table, setting_widgets, show_error, through_router,
                          upload_limit)

through_router(__file__)
st.title("Train")
HELP = {f.name: f.metadata.get("help") for f in dataclasses.fields(RunConfig)}

preset_name = st.selectbox("Preset", list(PRESETS), index=list(PRESETS).index("offline-quick"), key="train_preset",
                           help="Fills every field below; change any of them.")
preset = load_preset(preset_name)
# The Runs page's "fine-tune this model further" link (?init_from=<run>): one run on the preset's target data,
# with its target-stage settings, starting from that run's model (the pipeline's stage 2, by hand).
asked = st.query_params.get("init_from")
trained = models_available(runs_table())  # the models the Try page offers: what a run may start from
if asked and asked not in trained:  # a link's id is only ever one of the lab's models
    show_error(ValueError(f"init_from: no finished run {asked[:80]!r} in this lab to start from"))
    asked = None
base: RunConfig = preset.target if asked else preset.source
if asked:
    st.info(f"Fine-tuning the model of {asked} further: the form starts from the {preset_name} preset's "
            "target-stage settings (its data included); change any of them.")
# The Search page's "Train with the best settings" (?from_run=<trial>): the form filled in with that run's settings.
from_run = st.query_params.get("from_run")
if from_run:
    try:
        base = RunConfig.from_dict(RunDir.find(from_run).config())
        asked = base.init_from  # a target-stage trial starts from the search's source model
        st.info(f"Filled in with the settings of {from_run}; change any of them.")
    except ValueError as exc:
        show_error(exc)
errors: dict = st.session_state.get("train_errors", {})


def field_error(name: str) -> None:
    if name in errors:
        st.error(errors[name], icon="⚠️")


# -- data source (outside the form: an upload needs a preview and a column picker) -------------
st.subheader("Data")
source_choice = st.radio("Where the training data comes from", ["Preset / Hub / local path", "Upload a file"], horizontal=True,
                       key="train_source_choice")
upload_path, upload_fields, upload_label = None, None, None
if source_choice == "Upload a file":
    upload = st.file_uploader(f"CSV, parquet or JSONL with a text column and a label column ({upload_limit()})",
                              type=["csv", "parquet", "jsonl"], key="train_upload",
                              help="Larger data: give its path or Hub name instead.")
    if upload is not None:
        try:
            frame = read_upload(upload.name, upload.getvalue())
            st.dataframe(frame.head(5), hide_index=True, width="stretch")
            columns = [str(c) for c in frame.columns]
            text_guess = [c for c in ("title", "content", "text", "review") if c in columns] or columns[:1]
            upload_fields = st.multiselect("Text column(s)", columns, default=text_guess, key="train_upload_text")
            label_default = columns.index("label") if "label" in columns else len(columns) - 1
            upload_label = st.selectbox("Label column", columns, index=label_default, key="train_upload_label")
            counts = frame[upload_label].value_counts().rename_axis("label").reset_index(name="rows")
            st.caption("Label counts")
            st.dataframe(counts, hide_index=True)
            skipped = check_training_table(frame, upload_fields, upload_label, upload.name)
            if skipped:
                st.caption(f"{skipped}: training leaves them out (rows count from 0).")
            upload_path = save_upload(upload.name, upload.getvalue())
        except ValueError as exc:
            show_error(exc)

# -- the form: what to train on what by hand (a model list, uploads, runs to start from), the rest from RunConfig ----
with st.form("train_form"):
    mode = st.radio("Launch", ["Whole transfer pipeline", "One run"], horizontal=True, key="train_mode",
                    index=1 if asked else 0,
                    help="The pipeline fine-tunes on the source, scores the target zero-shot, fine-tunes on the "
                         "target, rescores the source, and trains a target-only baseline.")
    c1, c2 = st.columns(2)
    models = list(MODEL_PRESETS)
    model = c1.selectbox("Model", models, index=models.index(base.model) if base.model in models else 0,
                         key="train_model", help=HELP["model"])
    custom_model = c1.text_input("Other model (Hub id or folder)", key="train_model_custom",
                                 help="Overrides the list when filled in.")
    with c1:
        field_error("model")
    # Fine-tune further: start from a finished run's weights (an Amazon model, then IMDB), as `init_from`.
    start_from = c1.selectbox("Start from", ["", *trained], index=1 + trained.index(asked) if asked in trained else 0,
                              format_func=lambda i: f"the model of {i}" if i else "the pretrained weights",
                              key="train_init_from", help=HELP["init_from"])
    run_name = c1.text_input("Name (optional)", value="", key="train_name", help=HELP["name"])
    with c1:
        field_error("init_from")
    dataset = c2.text_input("Source dataset", value=base.dataset, key="train_dataset",
                            disabled=upload_path is not None,
                            help=HELP["dataset"] + " An upload above replaces it.")
    text_fields = c2.text_input("Text fields (comma-separated, empty: guess)", value=",".join(base.text_fields),
                                key="train_text_fields", disabled=upload_path is not None, help=HELP["text_fields"])
    with c2:
        field_error("dataset")
        field_error("text_fields")
    target_dataset = c2.text_input("Target dataset (pipeline)", value=preset.target.dataset, key="train_target")
    t1, t2, t3 = c2.columns(3)
    target_eval_len = t1.number_input("Target eval tokens", value=preset.target.inference_max_length,
                                      min_value=0, step=16, key="train_target_eval_len",
                                      help="Tokens per window when the pipeline scores the target (0: its training length).")
    target_windows = t2.number_input("Target score windows", value=preset.target.eval_windows, min_value=0, step=1,
                                     key="train_target_windows", help=HELP["eval_windows"])
    target_confidence = t3.number_input("Target stop at p", value=float(preset.target.eval_confidence), min_value=0.0,
                                        max_value=1.0, step=0.05, key="train_target_confidence",
                                        help=HELP["eval_confidence"])
    with c2:
        for name in ("target.dataset", "target.eval_max_length", "target.eval_windows", "target.eval_confidence"):
            field_error(name)

    values = {}
    for group, title in GROUPS.items():
        if group == "custom":
            continue
        if group == "more":
            with st.expander("More settings: evaluation interval, samples, validation, freezing, checkpoints, "
                             "compile, GPUs"):
                values.update(setting_widgets(RunConfig, base, group, errors))
        else:
            st.markdown(f"**{title}**")
            values.update(setting_widgets(RunConfig, base, group, errors))
    submitted = st.form_submit_button("🚀 Launch", type="primary")

if submitted and source_choice == "Upload a file" and upload_path is None:
    # Never fall back to the preset's dataset when the user meant to train on a file.
    st.session_state["train_errors"] = {"dataset": "dataset: upload a file the worker can read above (or choose "
                                                   "'Preset / Hub / local path')"}
    st.rerun()
if submitted:
    values.update(
        model=custom_model.strip() or model,  # a typed id or folder wins over the list
        dataset=str(upload_path) if upload_path else dataset.strip(),
        text_fields=upload_fields if upload_path else [f.strip() for f in text_fields.split(",") if f.strip()],
        label_field=upload_label if upload_path else base.label_field,
        init_from=start_from or None,
        name=(run_name.strip() if mode == "One run" else "") or base.name,
    )
    try:
        if mode == "One run":
            run = jobs.launch("train", base.with_overrides(values))
        else:
            # The schema's rule, as for `pipeline --set`: stage 2 and the baseline follow the form's model, precision,
            # seed and hardware; a bad target value is named `target.FIELD`.
            pcfg = dataclasses.replace(preset, source=base, name=run_name.strip() or preset.name).with_overrides({
                **values, "target.dataset": target_dataset.strip(),
                "target.eval_max_length": int(target_eval_len) or None, "target.eval_windows": int(target_windows),
                "target.eval_confidence": target_confidence})
            run = jobs.launch("pipeline", pcfg)
        st.session_state["train_errors"] = {}
        st.session_state["train_launched"] = run.run_id
        st.rerun()
    except ConfigError as exc:
        st.session_state["train_errors"] = {exc.field: str(exc)}
        st.rerun()
    except ValueError as exc:  # not one field's fault (a run folder that cannot be written, ...): shown above the form
        st.session_state["train_errors"] = {"": str(exc)}
        st.rerun()

if st.session_state.get("train_launched"):
    run_id = st.session_state["train_launched"]
    st.success(f"Launched {run_id}. It runs in the background: you can close this tab.")
    st.page_link("pages/runs.py", label="Watch it on the Runs page", icon="📈", query_params={"run": run_id})
if errors:
    st.warning("Nothing was launched. " + " ".join(errors.values()))
