"""Train: a form built from RunConfig; one run or the whole pipeline, validated before launch."""

import dataclasses

import streamlit as st

from core import jobs
from core.config import MODEL_PRESETS, PRESETS, SCHEDULERS, TRUNCATIONS, PRECISIONS, RunConfig, load_preset
from core.data import check_training_table, read_table_bytes, save_upload
from pages.common import models_available, runs_table, show_error, through_router

through_router(__file__)
st.title("Train")
HELP = {
    "model": "A preset, a Hugging Face Hub id, or a local model folder. minilm-offline works with no network.",
    "learning_rate": "Peak learning rate after warmup. 1e-5 to 5e-5 for base models; small models like up to 1e-4.",
    "max_length": "Tokens the model reads during training; longer reviews are truncated.",
    "eval_max_length": "Tokens when scoring (empty: same as max length). Longer is slower and usually better.",
    "truncation": "Which part of a long review to keep: head, tail, or head+tail (start and verdict).",
    "head_fraction": "With head+tail: the share of the tokens taken from the start (an Amazon review's title is "
                     "there), the rest from the end.",
    "eval_windows": "When scoring, average over up to N windows spread across a long review (1: one window "
                    "cut by the truncation rule). N windows cost up to N times the scoring time.",
    "eval_confidence": "With several windows: read the end of a review first, then its start, then the middle, "
                       "and stop once one label reaches this probability (1.0: always read every window).",
    "max_train_samples": "Use the first N training rows (0: all).",
    "epochs": "Passes over the training rows.",
    "early_stopping_patience": "Stop after this many evaluations without a better validation accuracy (0: off).",
    "precision": "auto: bf16 where the GPU or the CPU computes it in hardware (a CPU's amx_bf16 or avx512_bf16), "
                 "else fp16 on a GPU and fp32 on a CPU. The saved model is fp32 either way.",
    "torch_compile": "Compile the model with torch.compile (batches padded to multiples of 64 tokens): pays on a "
                     "GPU over a long run; on a CPU the compile time costs more than it saves.",
    "eval_steps": "Score the validation split every N training steps (0: once per epoch). Each score is a point on "
                  "the live validation curves and a checkpoint the best model is chosen from; more points cost "
                  "scoring time.",
    "logging_steps": "Write the training loss and learning rate to the run's metrics every N steps.",
    "samples_per_class": "Train on a seeded, balanced sample of N reviews per label instead of the first rows (a "
                         "split sorted by label, such as the Hub's imdb, would give one label). 0: off.",
    "max_eval_samples": "Score only the first N rows of the test split (0: all of it).",
    "validation_size": "Carved from the training rows to pick the best checkpoint and stop early: a fraction "
                       "(0.1) or a row count (100). The test split is never used for that.",
    "freeze_layers": "Freeze the embeddings and the bottom N encoder layers: faster steps, less to forget.",
    "num_processes": "Processes to train with through `accelerate launch` (one per GPU; 1: no launcher).",
    "init_from": "Fine-tune further: start from a finished run's trained model (e.g. an Amazon model, then train "
                 "it on IMDB) instead of the pretrained weights; its architecture and tokenizer come with it.",
}

preset_name = st.selectbox("Preset", list(PRESETS), index=list(PRESETS).index("offline-quick"), key="train_preset",
                           help="Fills every field below; change any of them.")
preset = load_preset(preset_name)
# The Runs page's "fine-tune this model further" link (?init_from=<run>): one run on the preset's target data,
# with its target-stage settings, starting from that run's model (the pipeline's stage 2, by hand).
asked = st.query_params.get("init_from")
base: RunConfig = preset.target if asked else preset.source
if asked:
    st.info(f"Fine-tuning the model of {asked} further: the form starts from the {preset_name} preset's "
            "target-stage settings (its data included); change any of them.")
errors: dict = st.session_state.get("train_errors", {})


def field_error(name: str) -> None:
    if name in errors:
        st.error(errors[name], icon="⚠️")


# -- data source (outside the form: an upload needs a preview and a column picker) -------------
st.subheader("Data")
source_kind = st.radio("Where the training data comes from", ["Preset / Hub / local path", "Upload a file"], horizontal=True,
                       key="train_source_kind")
upload_path, upload_fields, upload_label = None, None, None
if source_kind == "Upload a file":
    upload = st.file_uploader("CSV, parquet or JSONL with a text column and a label column",
                              type=["csv", "parquet", "jsonl"], key="train_upload")
    if upload is not None:
        try:
            frame = read_table_bytes(upload.name, upload.getvalue())
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

# -- the form ------------------------------------------------------------------------------
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
    field_error("model")
    # Fine-tune further: start from a finished run's weights (an Amazon model, then IMDB), as `init_from`.
    trained = models_available(runs_table())  # the models the Try page offers
    start_from = c1.selectbox("Start from", ["", *trained], index=1 + trained.index(asked) if asked in trained else 0,
                              format_func=lambda i: f"the model of {i}" if i else "the pretrained weights",
                              key="train_init_from", help=HELP["init_from"])
    field_error("init_from")
    dataset = c2.text_input("Source dataset", value=base.dataset, key="train_dataset",
                            disabled=upload_path is not None,
                            help="Hub name (amazon_polarity) or a local folder/file; an upload above replaces it.")
    field_error("dataset")
    text_fields = c2.text_input("Text fields (comma-separated, empty: guess)", value=",".join(base.text_fields),
                                key="train_text_fields", disabled=upload_path is not None)
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
        field_error("target.dataset")
        field_error("target.eval_max_length")
        field_error("target.eval_windows")
        field_error("target.eval_confidence")

    st.markdown("**Hyperparameters**")
    h1, h2, h3, h4 = st.columns(4)
    epochs = h1.number_input("Epochs", value=float(base.epochs), min_value=0.0, step=0.5, key="train_epochs",
                             help=HELP["epochs"])
    field_error("epochs")
    learning_rate = h2.number_input("Learning rate", value=float(base.learning_rate), format="%.1e", step=1e-5,
                                    key="train_lr", help=HELP["learning_rate"])
    field_error("learning_rate")
    batch_size = h3.number_input("Batch size", value=base.batch_size, min_value=0, step=8, key="train_bs")
    field_error("batch_size")
    max_train = h4.number_input("Train samples (0 = all)", value=base.max_train_samples or 0, min_value=0, step=100,
                                key="train_n", help=HELP["max_train_samples"])
    field_error("max_train_samples")
    h5, h6, h7, h8 = st.columns(4)
    max_length = h5.number_input("Max length", value=base.max_length, min_value=0, step=16, key="train_len",
                                 help=HELP["max_length"])
    field_error("max_length")
    eval_len = h6.number_input("Eval max length (0 = same)", value=base.eval_max_length or 0, min_value=0, step=32,
                               key="train_eval_len", help=HELP["eval_max_length"])
    truncation = h7.selectbox("Truncation", TRUNCATIONS, index=TRUNCATIONS.index(base.truncation),
                              key="train_trunc", help=HELP["truncation"])
    scheduler = h8.selectbox("LR schedule", SCHEDULERS, index=SCHEDULERS.index(base.scheduler), key="train_sched")
    h9, h10, h11, h12 = st.columns(4)
    warmup = h9.number_input("Warmup ratio", value=float(base.warmup_ratio), min_value=0.0, step=0.05, key="train_warmup")
    field_error("warmup_ratio")
    patience = h10.number_input("Early-stopping patience", value=base.early_stopping_patience, min_value=0,
                                key="train_patience", help=HELP["early_stopping_patience"])
    precision = h11.selectbox("Precision", PRECISIONS, index=PRECISIONS.index(base.precision), key="train_precision",
                              help=HELP["precision"])
    field_error("precision")
    seed = h12.number_input("Seed", value=base.seed, step=1, key="train_seed")
    h13, h14, h15, h16 = st.columns(4)
    windows = h13.number_input("Score windows", value=base.eval_windows, min_value=0, step=1, key="train_windows",
                               help=HELP["eval_windows"])
    field_error("eval_windows")
    confidence = h14.number_input("Stop at p", value=float(base.eval_confidence), min_value=0.0, max_value=1.0,
                                  step=0.05, key="train_confidence", help=HELP["eval_confidence"])
    field_error("eval_confidence")
    weight_decay = h15.number_input("Weight decay", value=float(base.weight_decay), min_value=0.0, step=0.01,
                                    key="train_wd")
    head_fraction = h16.number_input("Head share (head+tail)", value=float(base.head_fraction), min_value=0.0,
                                     max_value=1.0, step=0.05, key="train_head", help=HELP["head_fraction"])
    field_error("head_fraction")
    with st.expander("More settings: evaluation interval, balanced sample, validation, freezing, GPUs, compile, "
                     "name"):
        m1, m2, m3, m4 = st.columns(4)
        eval_steps = m1.number_input("Evaluate every N steps (0 = each epoch)", value=base.eval_steps or 0, min_value=0,
                                     step=50, key="train_eval_steps", help=HELP["eval_steps"])
        field_error("eval_steps")
        logging_steps = m2.number_input("Log every N steps", value=base.logging_steps, min_value=0, step=5,
                                        key="train_logging_steps", help=HELP["logging_steps"])
        field_error("logging_steps")
        per_class = m3.number_input("Balanced sample per class (0 = off)", value=base.samples_per_class or 0,
                                    min_value=0, step=100, key="train_per_class", help=HELP["samples_per_class"])
        field_error("samples_per_class")
        test_rows = m4.number_input("Test rows (0 = all)", value=base.max_eval_samples or 0, min_value=0, step=100,
                                    key="train_test_rows", help=HELP["max_eval_samples"])
        field_error("max_eval_samples")
        m5, m6, m7, m8 = st.columns(4)
        validation_size = m5.number_input("Validation (fraction or rows)", value=float(base.validation_size),
                                          min_value=0.0, step=0.05, key="train_validation", help=HELP["validation_size"])
        field_error("validation_size")
        freeze_layers = m6.number_input("Frozen encoder layers", value=base.freeze_layers, min_value=0, step=1,
                                        key="train_freeze_layers", help=HELP["freeze_layers"])
        freeze_embeddings = m6.checkbox("Freeze the embeddings", value=base.freeze_embeddings,
                                        key="train_freeze_embeddings")
        num_processes = m7.number_input("Processes (GPUs)", value=base.num_processes, min_value=0, step=1,
                                        key="train_processes", help=HELP["num_processes"])
        field_error("num_processes")
        torch_compile = m7.checkbox("torch.compile", value=base.torch_compile, key="train_compile",
                                    help=HELP["torch_compile"])
        run_name = m8.text_input("Name (optional)", value="", key="train_name",
                                 help="Shown beside the run's id in every list.")
        keep_checkpoints = m8.checkbox("Keep the checkpoints", value=base.keep_checkpoints, key="train_keep_ckpt",
                                       help="After the run completes, model/ holds the best checkpoint's weights and "
                                            "checkpoints/ is removed (weights again and optimizer state: GBs for a "
                                            "large model). Tick to keep it.")
    submitted = st.form_submit_button("🚀 Launch", type="primary")

if submitted and source_kind == "Upload a file" and upload_path is None:
    # Never fall back to the preset's dataset when the user meant to train on a file.
    st.session_state["train_errors"] = {"dataset": "dataset: upload a file the worker can read above (or choose "
                                                   "'Preset / Hub / local path')"}
    st.rerun()
if submitted:
    values = dict(
        model=custom_model.strip() or model,  # a typed id or folder wins over the list
        dataset=str(upload_path) if upload_path else dataset.strip(),
        text_fields=upload_fields if upload_path else [f.strip() for f in text_fields.split(",") if f.strip()],
        label_field=upload_label if upload_path else base.label_field,
        epochs=epochs, learning_rate=learning_rate, batch_size=int(batch_size),
        max_train_samples=int(max_train) or None, max_length=int(max_length), eval_max_length=int(eval_len) or None,
        truncation=truncation, head_fraction=head_fraction, scheduler=scheduler, warmup_ratio=warmup,
        early_stopping_patience=int(patience), precision=precision, seed=int(seed), eval_windows=int(windows),
        eval_confidence=confidence, weight_decay=weight_decay, init_from=start_from or None,
        eval_steps=int(eval_steps) or None, logging_steps=int(logging_steps), samples_per_class=int(per_class) or None,
        max_eval_samples=int(test_rows) or None, validation_size=validation_size, freeze_layers=int(freeze_layers),
        torch_compile=torch_compile,
        freeze_embeddings=freeze_embeddings, num_processes=int(num_processes), keep_checkpoints=keep_checkpoints,
        name=(run_name.strip() if mode == "One run" else "") or base.name,
    )
    try:
        source = RunConfig.from_dict({**base.to_dict(), **values})
        if mode == "One run":
            run = jobs.launch("train", source)
        else:
            # Stage 2 and the baseline follow the form's model, precision and seed; a bad target value is
            # named `target.FIELD`, as on the command line.
            pcfg = dataclasses.replace(preset, source=source, name=run_name.strip() or preset.name).with_overrides({
                "target.dataset": target_dataset.strip(), "target.model": source.model,
                "target.precision": source.precision, "target.seed": source.seed,
                "target.num_processes": source.num_processes, "target.torch_compile": source.torch_compile,
                "target.eval_max_length": int(target_eval_len) or None, "target.eval_windows": int(target_windows),
                "target.eval_confidence": target_confidence})
            run = jobs.launch("pipeline", pcfg)
        st.session_state["train_errors"] = {}
        st.session_state["train_launched"] = run.run_id
        st.rerun()
    except ValueError as exc:
        name = str(exc).split(":", 1)[0].strip()
        fields = [f.name for f in dataclasses.fields(RunConfig)]
        known = set(fields) | {f"target.{f}" for f in fields}
        st.session_state["train_errors"] = {name if name in known else "model": str(exc)}
        st.rerun()

if st.session_state.get("train_launched"):
    run_id = st.session_state["train_launched"]
    st.success(f"Launched {run_id}. It runs in the background: you can close this tab.")
    st.page_link("pages/runs.py", label="Watch it on the Runs page", icon="📈", query_params={"run": run_id})
if errors:
    st.warning("Nothing was launched. " + " ".join(errors.values()))
