"""Fine-tuning: a thin wrapper around `transformers.Trainer` that keeps the run folder current.

The shape follows Hugging Face's `run_classification.py`: a config in, data loaded and tokenized,
a Trainer built, trained, saved, evaluated. What it adds is the run folder (status, metrics,
stop requests) and resume from the folder's own checkpoints.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig
from .errors import ConfigError
from .data import Encoder, load_splits, preflight_dataset, tokenize_cached
from .evaluation import calibrate, evaluate
from .export import write_card
from .metrics import classification_metrics, one_answer_note
from .paths import hub_reachable, unreachable
from .predictor import Predictor
from .runs import RunDir, append_jsonl, disk_full, error_line, now, read_json, read_jsonl
from .terminal import Terminal


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _make_callback():
    from transformers import TrainerCallback

    class RunFolderCallback(TrainerCallback):
        """Appends every Trainer log entry to metrics.jsonl, keeps status.json current, honours STOP.

        Only rank 0 writes; every rank agrees on stopping (in DDP a rank that stops alone deadlocks
        the others in their next all-reduce).
        """

        def __init__(self, run: RunDir, samples_per_step: int, status_every: float = 2.0, log_every: float = 30.0):
            self.run = run
            self.samples_per_step = samples_per_step
            self.main = _rank() == 0
            self.status_every = status_every
            self.log_every = log_every  # log.txt gets a training line this often; metrics.jsonl gets every one
            self._last_status = 0.0
            self._last_log = 0.0
            self.t0 = time.time()
            self.step0 = 0
            self.stopped = False
            parent = run.job()["parent"]
            self.holders = [run] + ([RunDir.for_id(parent)] if parent else [])

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0, self.step0 = time.time(), state.global_step
            if self.main:
                self.run.update_status(state="running", step=state.global_step, total_steps=state.max_steps,
                                       phase="training")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.main and logs:
                record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "time": now()}
                record.update({k: (round(v, 6) if isinstance(v, float) else v) for k, v in logs.items()})
                append_jsonl(self.run.metrics_path, record)
                self._status(state, force=True)
                self._log_line(state, logs)

        def _log_line(self, state, logs: dict) -> None:
            """A line in log.txt for each evaluation and, every `log_every` seconds, for training, so that
            `python -m core logs -f` shows a run moving (the numbers: metrics.jsonl)."""
            where = f"step {state.global_step}/{state.max_steps} epoch {state.epoch or 0:.2f}"
            if "eval_accuracy" in logs:
                self.run.log(f"{where}: validation accuracy {logs['eval_accuracy']:.4f}, "
                             f"loss {logs.get('eval_loss', float('nan')):.4f}")
            elif "loss" in logs and time.time() - self._last_log >= self.log_every:
                self._last_log = time.time()
                self.run.log(f"{where}: training loss {logs['loss']:.4f}, "
                             f"learning rate {logs.get('learning_rate', 0):.2e}")

        def on_step_end(self, args, state, control, **kwargs):
            self._hold(state)
            if self._should_stop(args.device):
                self.stopped = True
                control.should_training_stop = True
                control.should_save = True  # a checkpoint at this very step, for resume
            self._status(state)

        def _paused_from(self) -> int | None:
            """This run's PAUSE, or its parent's (a paused pipeline or search holds its stage or trials)."""
            for holder in self.holders:
                if (at := holder.paused_from()) is not None:
                    return at
            return None

        def _hold(self, state) -> None:
            """PAUSE (`python -m core pause`): wait here, between two steps, until it is lifted or a stop comes."""
            at = self._paused_from()
            if at is None or state.global_step < at or self.run.stop_requested():
                return
            since = time.time()
            if self.main:
                self.run.update_status(phase="paused", step=state.global_step)
                self.run.log(f"paused at step {state.global_step}")
            while self._paused_from() is not None and not self.run.stop_requested():
                time.sleep(0.2)
            self.t0 += time.time() - since  # the rate and ETA count training time only
            if self.main:
                self.run.update_status(phase="training")
                self.run.log(f"continued at step {state.global_step}")

        def _should_stop(self, device) -> bool:
            flag = self.run.stop_requested()
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                import torch

                # on the training device: NCCL (GPUs) refuses CPU tensors, gloo (CPUs) takes them
                t = torch.tensor([1.0 if flag else 0.0], device=device)
                dist.all_reduce(t, op=dist.ReduceOp.MAX)
                flag = bool(t.item())
            return flag

        def _status(self, state, force: bool = False):
            if not self.main or (not force and time.time() - self._last_status < self.status_every):
                return
            self._last_status = time.time()
            Terminal.doing = f"{self.run.run_id}: step {state.global_step}/{state.max_steps} (epoch {state.epoch or 0:.2f})"
            elapsed = time.time() - self.t0
            done = state.global_step - self.step0
            rate = done / elapsed if elapsed > 0 and done > 0 else None
            remaining = max(state.max_steps - state.global_step, 0)
            self.run.update_status(
                step=state.global_step, total_steps=state.max_steps, epoch=round(state.epoch or 0.0, 3),
                elapsed_s=round(elapsed, 1), eta_s=round(remaining / rate, 1) if rate else None,
                samples_per_s=round(rate * self.samples_per_step, 2) if rate else None)

    return RunFolderCallback


def compute_metrics(eval_pred) -> dict[str, float]:
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    m = classification_metrics(np.asarray(labels), np.asarray(logits).argmax(-1))
    return {"accuracy": m["accuracy"], "f1": m["f1"]}


def complete_checkpoint(folder: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint whose state reads and whose weights are there was
    written whole. A full disk or a power cut mid-save leaves one that is not."""
    return isinstance(read_json(folder / "trainer_state.json"), dict) and any(folder.glob("*.safetensors"))


def latest_checkpoint(run: RunDir) -> Path | None:
    ckpts = [p for p in run.checkpoints_dir.glob("checkpoint-*") if complete_checkpoint(p)]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1])) if ckpts else None


def drop_incomplete_checkpoints(run: RunDir) -> list[str]:
    """Remove the checkpoints a failed save left half-written (the room they took is what a full disk lacks)."""
    dropped = [p for p in run.checkpoints_dir.glob("checkpoint-*") if p.is_dir() and not complete_checkpoint(p)]
    for p in dropped:
        shutil.rmtree(p, ignore_errors=True)
    return [p.name for p in dropped]


def _rewind_metrics(run: RunDir, step: int) -> None:
    """Resuming from a checkpoint at `step`: drop log lines after it so no step appears twice."""
    kept = [r for r in read_jsonl(run.metrics_path) if int(r.get("step", 0)) <= step]
    tmp = run.metrics_path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, run.metrics_path)


def run_config(run: RunDir) -> RunConfig:
    """A train run's config.json as a RunConfig, without the folder's bookkeeping keys."""
    return RunConfig.from_dict(run.config())


def model_source(cfg: RunConfig) -> str:
    """Where this run's weights start: an earlier run's model (`init_from`) or the base model."""
    from .modeling import resolve_model

    if cfg.init_from:
        parent = RunDir.find(cfg.init_from)
        if not parent.has_model():
            raise ConfigError("init_from", f"run {parent.run_id} has no trained model yet")
        return str(parent.model_dir)
    return resolve_model(cfg.model)


def preflight(cfg: RunConfig) -> None:
    """Cheap checks that need no download: the model, dataset and init_from can be found.

    Run before a run folder is created, so a typo never leaves a failed run behind.
    """
    from .modeling import resolve_model, resolve_precision

    resolve_precision(cfg.precision)  # fp16 on a machine without a GPU is refused here, not in the worker
    if cfg.init_from:
        try:
            RunDir.find(cfg.init_from)
        except ValueError as exc:  # a typo: "run: no run ..."
            raise ConfigError("init_from", str(exc).partition(": ")[2]) from None
    else:
        ref = resolve_model(cfg.model)
        if not Path(ref).is_dir() and not hub_reachable() and not _hub_cached(ref):
            raise unreachable("model", cfg.model)
    preflight_dataset(cfg.dataset)


def check_run(cfg: RunConfig) -> RunConfig:
    """The train kind's check before its folder is made."""
    preflight(cfg)
    return cfg


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:
        return False


def train_run(cfg: RunConfig, run: RunDir, resume: bool = False, callbacks: list | None = None) -> dict[str, Any]:
    """Train (or resume) one run in this process; returns the final status. Never leaves it 'running'.
    `callbacks`: more TrainerCallbacks (a search trial's reporter: one with `.pruned` set ends the run `pruned`)."""
    main = _rank() == 0
    if main:
        run.path.mkdir(parents=True, exist_ok=True)
        if not run.config_path.exists():
            run.write_config("train", cfg.to_dict())
        run.stop_flag.unlink(missing_ok=True)
        run.mark_worker()
        run.update_status(state="running", phase="loading data", started_at=run.status().get("started_at") or now(),
                          error=None)
    try:
        result = _train(cfg, run, resume, main, list(callbacks or []))
    except KeyboardInterrupt:
        if main:
            run.update_status(state="interrupted", error="interrupted (signal)", ended_at=now())
        raise
    except Exception as exc:  # the run folder must say what went wrong, then the caller decides
        if main:
            full = disk_full(exc, run.path)
            dropped = drop_incomplete_checkpoints(run) if full else []  # makes room for the status that says so
            run.fail(exc, full=full)
            if dropped:
                run.log(f"removed the half-written {', '.join(dropped)}; resume starts from the last whole checkpoint")
        raise
    return result


def _train(cfg: RunConfig, run: RunDir, resume: bool, main: bool, extra: list) -> dict[str, Any]:
    """One run's training in the steps its log.txt shows: data, model, tokens and Trainer, training (from the last
    checkpoint on resume), then the model saved, calibrated and scored. Only rank 0 (`main`) writes the folder."""
    import transformers

    from .modeling import keep_freed_memory

    transformers.logging.set_verbosity_error()
    keep_freed_memory()
    splits = _load_data(cfg, run)
    tokenizer, model, precision = _load_model(cfg, run, main)
    trainer, callback = _make_trainer(cfg, run, splits, tokenizer, model, precision, extra)
    del model  # the Trainer holds it; _finish frees it with the Trainer
    checkpoint = _resume_point(run, resume, main)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    if callback.stopped:
        if main:
            run.log(f"stopped at step {trainer.state.global_step}; checkpoint saved")
            run.stop_flag.unlink(missing_ok=True)
            return run.update_status(state="stopped", step=trainer.state.global_step, ended_at=now())
        return {}
    if not main:
        return {}
    if pruned := next((cb.pruned for cb in extra if getattr(cb, "pruned", None)), None):
        run.log(pruned)  # its curve stays; its checkpoints go: a pruned trial is never resumed
        shutil.rmtree(run.checkpoints_dir, ignore_errors=True)
        return run.update_status(state="pruned", step=trainer.state.global_step, ended_at=now(),
                                 metrics={"val_accuracy": trainer.state.best_metric})
    run.update_status(phase="saving model")
    save_model(trainer, tokenizer, cfg, run)
    best = trainer.state.best_metric, trainer.state.best_model_checkpoint
    # Score the saved folder, not the Trainer's in-memory model: the figures are then for exactly the weights on
    # disk, and the optimizer state and accelerate's wrappers are gone (faster too).
    del trainer
    gc.collect()
    return _finish(cfg, run, splits, *best)


def _load_data(cfg: RunConfig, run: RunDir):
    splits = load_splits(cfg)
    if one_class := splits.train.one_class_note():  # it would train to 100% validation accuracy and learn nothing
        field, fix = (("max_train_samples", "; the split may be sorted by label: samples_per_class draws a balanced sample")
                      if cfg.max_train_samples else ("label_field", ""))
        raise ValueError(f"{field}: {one_class}: a classifier needs both labels to learn{fix}")
    run.log(f"data: train {len(splits.train)} {splits.train.label_counts()}, "
            f"validation {len(splits.validation)} {splits.validation.label_counts()}, "
            f"test {len(splits.test) if splits.test else 0} ({splits.test.source if splits.test else 'none'})")
    for part in (splits.train, splits.validation, splits.test):
        if part is not None and part.skipped_note():
            run.log(part.skipped_note())
    return splits


def _load_model(cfg: RunConfig, run: RunDir, main: bool):
    import transformers

    from .modeling import freeze, load_model, load_tokenizer, resolve_precision

    precision = resolve_precision(cfg.precision)
    source = model_source(cfg)
    tokenizer = load_tokenizer(source)
    # Seed before the model exists: a new classification head is drawn at load time, and the
    # Trainer only seeds inside its own __init__, too late for that.
    transformers.set_seed(cfg.seed)
    model = load_model(source)
    trainable = freeze(model, cfg.freeze_embeddings, cfg.freeze_layers)
    run.log(f"model: {source} ({trainable:,} trainable parameters), attention {model.config._attn_implementation}")
    run.log(f"precision {precision.name} ({precision.why})")
    if precision.warning:
        run.log(f"warning: {precision.warning}")
    if main:
        run.update_status(**precision.as_status())
    return tokenizer, model, precision


def _make_trainer(cfg: RunConfig, run: RunDir, splits, tokenizer, model, precision, extra: list):
    """The Trainer over the tokenized splits, with the run folder's callback (and `extra`)."""
    from transformers import (DataCollatorWithPadding, EarlyStoppingCallback, PrinterCallback, ProgressCallback,
                              Trainer)

    train_ds, hit = tokenize_cached(splits.train, Encoder(tokenizer, cfg.max_length, cfg.truncation, cfg.head_fraction))
    eval_encoder = Encoder(tokenizer, cfg.inference_max_length, cfg.truncation, cfg.head_fraction)
    val_ds, hit2 = tokenize_cached(splits.validation, eval_encoder)
    run.log(f"tokenized ({'cache hit' if hit and hit2 else 'tokenized now'})")
    val_ds = val_ds.select(np.argsort(val_ds["length"], kind="stable"))  # eval batches of similar length: less padding
    # torch.compile specialises on shapes: widths rounded up to a multiple of 64 leave a few shapes to compile
    # (max_length / 64 of them) instead of one per batch; without it, padding to the batch's longest is cheapest.
    pad_multiple = 64 if cfg.torch_compile else None

    world = int(os.environ.get("WORLD_SIZE", "1"))
    callback = _make_callback()(run, samples_per_step=cfg.batch_size * cfg.gradient_accumulation_steps * world)
    callbacks = [callback, *extra]
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = Trainer(model=model, args=_training_args(cfg, run, precision, world), train_dataset=train_ds,
                      eval_dataset=val_ds, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_multiple),
                      compute_metrics=compute_metrics, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # it prints log dicts to stdout; metrics.jsonl has them
    if Terminal.bars():  # the bar, without the log dict it writes under it every few steps (log lines say it)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(type("BarOnly", (ProgressCallback,), {"on_log": lambda self, *a, **k: None}))
    return trainer, callback


def _training_args(cfg: RunConfig, run: RunDir, precision, world: int):
    from transformers import TrainingArguments

    cuda = _cuda()
    per_epoch = "epoch" if cfg.eval_steps is None else "steps"
    return TrainingArguments(
        output_dir=str(run.checkpoints_dir),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a ratio of total steps
        lr_scheduler_type=cfg.scheduler,
        eval_strategy=per_epoch,
        save_strategy=per_epoch,
        eval_steps=cfg.eval_steps,
        save_steps=cfg.eval_steps,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        save_total_limit=2,  # the best and the latest
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        fp16=precision.name == "fp16",
        bf16=precision.name == "bf16",  # autocast: weights, head, loss and optimizer state stay fp32
        use_cpu=not cuda,
        optim="adamw_torch_fused",  # one kernel for all parameters instead of a loop over tensors (CPU too)
        torch_compile=cfg.torch_compile,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=not Terminal.bars(),  # a bar on a terminal; in log.txt it would be lines of carriage returns
        # A GPU step is short enough for collation in the main process to leave the card waiting; on a CPU the
        # workers would only compete with the step for its cores.
        dataloader_num_workers=2 if cuda else 0,
        dataloader_pin_memory=cuda,
        dataloader_persistent_workers=cuda,
        ddp_find_unused_parameters=False if world > 1 else None,
        ddp_backend=("nccl" if cuda else "gloo") if world > 1 else None,
    )


def _resume_point(run: RunDir, resume: bool, main: bool) -> Path | None:
    """The checkpoint a resumed run continues from, its metrics cut back to it; without one the run starts
    afresh, its metrics too."""
    if resume and main:
        drop_incomplete_checkpoints(run)  # else the Trainer's rotation would count it, and might delete a whole one
    checkpoint = latest_checkpoint(run) if resume else None
    if main and checkpoint is not None:
        step = int(checkpoint.name.split("-")[-1])
        _rewind_metrics(run, step)
        run.log(f"resuming from {checkpoint.name}")
    elif main:  # a new run, or one resumed before its first checkpoint: it starts again from step 0, so do its curves
        if resume:
            run.log("no checkpoint to resume from: training starts again")
        run.metrics_path.unlink(missing_ok=True)
    return checkpoint


def _finish(cfg: RunConfig, run: RunDir, splits, best_val: float | None, best_checkpoint: str | None) -> dict[str, Any]:
    """The saved model (the best checkpoint's weights) calibrated on validation, scored on the test split, carded."""
    if best_checkpoint and best_val is not None:
        run.log(f"saved the model of {Path(best_checkpoint).name}, the best validation accuracy "
                f"({best_val:.4f}), as {run.model_dir.name}/")
    headline: dict[str, Any] = {"val_accuracy": best_val}
    predictor = Predictor.from_folder(run.model_dir, name=run.run_id, batch_size=cfg.eval_batch_size,
                                      precision=cfg.precision)
    run.update_status(phase=f"calibrating on {splits.validation.source}")
    fitted = calibrate(predictor, splits.validation, run.model_dir)
    headline["temperature"] = fitted["temperature"]
    run.log(f"calibration: temperature {fitted['temperature']:g} fitted on {fitted['fitted_on']} (n={fitted['n']}): "
            f"NLL {fitted['nll_before']:.4f} -> {fitted['nll_after']:.4f}, ECE {fitted['ece_before']:.4f} -> "
            f"{fitted['ece_after']:.4f}")
    if splits.test is not None:
        run.update_status(phase=f"evaluating on {splits.test.source}")
        if one_class := splits.test.one_class_note():
            run.log(f"note: {one_class}: test accuracy says how often the model gives that label")
        m = evaluate(predictor, splits.test, run)
        headline.update(test_accuracy=m["accuracy"], test_f1=m["f1"], test_n=m["n"], test_dataset=m["dataset"],
                        test_ece=m["ece"])
        run.log(f"test {m['dataset']}: accuracy {m['accuracy']:.4f} f1 {m['f1']:.4f} n={m['n']}, ECE {m['ece']:.4f}")
        if note := one_answer_note(m):
            run.log(f"note: {note}")
    try:
        write_card(run)  # README.md beside the model: a Hugging Face model card of what it measured
    except Exception as exc:  # a card is a courtesy: never the reason a trained run fails
        run.log(f"warning: the model card could not be written ({error_line(exc)})")
    status = run.update_status(state="completed", ended_at=now(), metrics=headline)
    if not cfg.keep_checkpoints and run.checkpoints_dir.exists():  # only after "completed": a failure before it resumes
        size = sum(f.stat().st_size for f in run.checkpoints_dir.rglob("*") if f.is_file())
        shutil.rmtree(run.checkpoints_dir, ignore_errors=True)
        run.log(f"removed {run.checkpoints_dir.name}/ ({size / 2**20:,.0f} MB): {run.model_dir.name}/ holds the best "
                "checkpoint's weights, and a completed run is never resumed (keep_checkpoints=true keeps them)")
    return status


def save_model(trainer, tokenizer, cfg: RunConfig, run: RunDir) -> None:
    """The final (best) model as safetensors + tokenizer + label names, written to a temp folder, then renamed."""
    tmp = run.path / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; config.json of the run says the same
    tokenizer.save_pretrained(str(tmp))
    cfg.reading.save(tmp)
    shutil.rmtree(run.model_dir, ignore_errors=True)
    os.replace(tmp, run.model_dir)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


