"""`python -m core ...`: everything the app does, from a terminal.

    train     fine-tune one model (foreground)          pipeline  the whole transfer experiment (foreground)
    eval      score a run's model on a dataset          predict   label reviews with a run's model
              (--background: as a job of its own)
    launch    any kind of job in the background         stop      stop (or cancel) a job
    resume    continue a stopped/interrupted job        runs      list runs
    pause     hold a training run between steps         unpause   let it go on
    logs      print or follow a run's log               presets   list presets
    compare   runs side by side                         delete    delete a finished run
    results   what a job found: a pipeline's comparison table (--flipped N: the reviews that changed label), a
              search's trials, a curve's points, an evaluation's figures
    search    an Optuna hyperparameter search, each trial a background run
    curve     the data-efficiency curve: transfer against a target-only baseline at each label budget
    export    a model as a self-contained folder with its card (--onnx)   push   that folder to the Hub
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from typing import Any

from . import kinds
from .config import (PRECISIONS, PRESETS, PipelineConfig, RunConfig, load_config_file, load_preset,
                     settings_help)
from .errors import ConfigError
from .paths import PROJECT_ROOT


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help=f"start from a preset: {', '.join(PRESETS)}")
    p.add_argument("--config", help="start from a JSON config file (a run's or a pipeline's config.json)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help="set one field (repeatable); a pipeline's stage 2 and baseline: target.FIELD=VALUE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("Fields --set takes. A list takes commas (text_fields=title,content); an empty value or none clears "
                "an optional one (target.max_eval_samples=).\n\n" + settings_help())


def settings_options(p: argparse.ArgumentParser, cls: type, title: str) -> None:
    """An option for each field of the settings class `cls`: `--field-name` (and the field's own short `flags`),
    its help, default and choices from the schema. Values stay strings here: the schema parses and checks them, so
    a bad one is one line naming the field, as from `--set` or a form. Fields that hold settings of their own (a
    search's base and space) have options of their own."""
    from .config import field_default, field_kind

    group = p.add_argument_group(title)
    for f in dataclasses.fields(cls):
        tp, _ = field_kind(cls, f)
        if tp is dict:
            continue
        meta, default = f.metadata, field_default(f)
        extra = f" One of: {', '.join(map(str, meta['choices']))}." if "choices" in meta else ""
        shown = ",".join(default) if isinstance(default, list) else default
        group.add_argument(f"--{f.name.replace('_', '-')}", *meta.get("flags", ()), dest=f.name, default=argparse.SUPPRESS,
                           metavar=tp.__name__.upper(), help=f"{meta.get('help', '')}{extra} (default: {shown!r})")


def given_settings(cls: type, args) -> dict[str, Any]:
    """The fields of `cls` given as options on this command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def _quiet_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress on stderr (by default: each log line, a progress bar on a terminal, and a line "
                        "every 30 s elsewhere)")


def parse_assignments(sets: list[str]) -> dict[str, str]:
    """`--set FIELD=VALUE` items -> {FIELD: VALUE}, or a ValueError naming the malformed one."""
    out = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set: expected FIELD=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def build_settings(kind: str, args) -> Any:
    """A kind's settings from `--preset`, then `--config`, then each `--set FIELD=VALUE`."""
    entry = kinds.get(kind)
    cls = entry.settings_class()
    base = None
    if getattr(args, "preset", None):
        if entry.preset is None:
            raise ConfigError("preset", f"a {kind} job takes no preset; give its fields with --set")
        base = kinds.load(entry.preset)(args.preset)
    if getattr(args, "config", None):
        base = cls.from_file(args.config, base)
    return (base if base is not None else cls()).with_overrides(parse_assignments(args.sets))


def build_pipeline_config(args) -> PipelineConfig:
    return build_settings("pipeline", args)


def build_run_config(args) -> RunConfig:
    return build_settings("train", args)


def _print(obj: Any, as_json: bool, text: str | None = None) -> None:
    print(json.dumps(obj, indent=None if as_json else 2, default=str) if as_json or text is None else text)


# ---------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from .metrics import one_answer_note
    from .jobs import create_run
    from .training import train_run

    from .tracking import mirrored

    cfg = build_run_config(args)
    run = create_run("train", cfg, args.run_id)
    with mirrored(run):
        status = train_run(cfg, run)
    for m in run.evals().values():  # a model that learnt nothing: said on stderr too, not only in log.txt
        if note := one_answer_note(m):
            print(f"note: {m['dataset']}: {note}", file=sys.stderr)
    _print({"run_id": run.run_id, "run_dir": str(run.path), **status}, args.json,
           f"{run.run_id}: {status.get('state')} {json.dumps(status.get('metrics', {}))}")
    return 0 if status.get("state") in ("completed", "stopped") else 1


def cmd_pipeline(args) -> int:
    from .jobs import create_run
    from .pipeline import write_results, results_json, row_warnings, run_pipeline

    from .tracking import mirrored

    pcfg = build_pipeline_config(args)
    pipe = create_run("pipeline", pcfg, args.run_id)
    with mirrored(pipe):
        status = run_pipeline(pcfg, pipe)
        results = write_results(pipe)
    if args.json:
        print(json.dumps(results_json(results, status.get("state")), default=str))
        for warning in row_warnings(results["rows"]):  # results.md (printed without --json) has them as notes
            print(f"note: {warning}", file=sys.stderr)
    else:
        print((pipe.path / "results.md").read_text())
    return 0 if status.get("state") == "completed" else 1


def cmd_results(args) -> int:
    """What a job found, finished or so far: a pipeline's comparison table (--flipped N: the target reviews whose
    label flipped), a search's trials, a curve's points, an evaluation's figures; whatever its kind reads."""
    from .runs import RunDir

    run = RunDir.find(args.run)
    entry = kinds.of(run)
    if entry.results is None:
        raise ValueError(f"run: {run.run_id} is a {entry.name} run, which has no results table (`runs --json` has its "
                         "figures; `compare` puts any runs side by side)")
    report = kinds.load(entry.results)(run, flipped=args.flipped)
    print(json.dumps(report.data, default=str) if args.json else report.text)
    for note in report.notes if args.json else []:  # the text has them as notes already
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    from .config import EvalConfig
    from .evaluation import evaluate_config, metrics_text, public_metrics
    from .metrics import one_answer_note
    from .runs import RunDir

    cfg = EvalConfig.from_dict({**given_settings(EvalConfig, args), **parse_assignments(args.sets)})
    if args.background:  # a job of its own, in the queue like a training run; its folder keeps the results
        from .jobs import launch

        job = launch("eval", cfg, args.run_id)
        _print({"run_id": job.run_id, "run_dir": str(job.path)}, args.json, job.run_id)
        return 0
    save_to = RunDir.find(cfg.run) if args.save else None
    from .terminal import Terminal

    m, examples = evaluate_config(cfg, save_to, name=cfg.name or None, log=Terminal.say)
    out = public_metrics(m)
    if examples.skipped_note():
        print(f"note: {examples.skipped_note()}", file=sys.stderr)  # stderr: --json's stdout stays one object
    if one_class := examples.one_class_note():
        hint = (" (the first rows of a split sorted by label? --per-class N draws a balanced sample)"
                if cfg.max_samples else "")
        print(f"note: {one_class}: the accuracy says how often the model gives that label{hint}",
              file=sys.stderr)
    if note := one_answer_note(m):
        print(f"note: {note}", file=sys.stderr)
    if m.get("by_group"):
        out["by"] = {m["group_field"]: m["by_group"]}
    _print(out, args.json, metrics_text(m))
    return 0


def cmd_predict(args) -> int:
    from .predictor import Predictor

    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ValueError("review: no text given (pass reviews as arguments or one per line on stdin)")
    predictor = Predictor.from_run(args.run, precision=args.precision)
    results = predictor.predict(texts)
    if args.explain:
        for r, text in zip(results, texts):
            r["words"] = [[w, round(e, 4)] for w, e in predictor.word_effects(text)]
    if args.json:
        print(json.dumps([{"text": t[:200], **r} for t, r in zip(texts, results)]))
        return 0
    for text, r in zip(texts, results):
        print(f"{r['label']}\t{r['probability']:.4f}\t{text[:80]}")
        if args.explain:  # the words that moved P(positive) most, each with its push
            top = sorted(r["words"], key=lambda we: -abs(we[1]))[:args.explain]
            print("\t" + "  ".join(f"{w} {e:+.3f}" for w, e in top))
    return 0


def cmd_launch(args) -> int:
    from .jobs import launch

    run = launch(args.kind, build_settings(args.kind, args), args.run_id)
    _print({"run_id": run.run_id, "run_dir": str(run.path)}, args.json, run.run_id)
    return 0


def cmd_search(args) -> int:
    """Queue a search: its trials are ordinary runs, started by the queue one after another (or N at once)."""
    from .jobs import launch
    from .search import SearchConfig

    loaded = load_config_file(args.config) if args.config else None
    if args.preset or isinstance(loaded, PipelineConfig):  # a pipeline: its source stage, or --stage target
        base = build_pipeline_config(args).to_dict()
    else:
        base = build_run_config(args).to_dict()
    space = {}
    for item in args.params:
        key, sep, spec = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param: expected FIELD=SPEC, got {item!r}")
        space[key.strip()] = spec
    cfg = SearchConfig.from_dict({**given_settings(SearchConfig, args), "base": base, "space": space})
    run = launch("search", cfg, args.run_id)
    _print({"run_id": run.run_id, "run_dir": str(run.path)}, args.json, run.run_id)
    return 0


def cmd_curve(args) -> int:
    """Queue the data-efficiency curve: the source stage once, then target and baseline stages per budget and seed."""
    from .curve import CurveConfig
    from .jobs import launch

    from .curve import preset_curve

    sized = preset_curve(args.preset).to_dict() if args.preset else {}  # a preset's budgets and seeds for its machine
    cfg = CurveConfig.from_dict({**sized, **given_settings(CurveConfig, args), "base": build_pipeline_config(args).to_dict()})
    run = launch("curve", cfg, args.run_id)
    _print({"run_id": run.run_id, "run_dir": str(run.path)}, args.json, run.run_id)
    return 0


def cmd_export(args) -> int:
    from .export import export

    out = export(args.run, args.to, onnx=args.onnx)
    check = (f"; model.onnx matches PyTorch within {out['onnx']['max_abs_diff']:.1e} on {out['onnx']['reviews_checked']} "
             "reviews") if args.onnx else ""
    _print(out, args.json, f"{out['run_id']} -> {out['to']} ({len(out['files'])} files{check})")
    return 0


def cmd_push(args) -> int:
    from .export import push

    url = push(args.run, args.repo, private=args.private)
    _print({"run_id": args.run, "repo": args.repo, "url": url}, args.json, url)
    return 0


def cmd_stop(args) -> int:
    from .jobs import stop

    status = stop(args.run, timeout=args.timeout)
    _print({"run_id": args.run, "state": status.get("state")}, args.json, f"{args.run}: {status.get('state')}")
    return 0


def cmd_resume(args) -> int:
    from .jobs import resume

    run = resume(args.run)
    state = run.status().get("state")
    text = f"{run.run_id}: {state}" + (" (a search goes on by itself to its finished trials)" if state == "running" else "")
    _print({"run_id": run.run_id, "run_dir": str(run.path), "state": state}, args.json, text)
    return 0


def cmd_pause(args) -> int:
    """Hold a training run between two steps (now, or once it reaches --at-step), or let it go on."""
    from .runs import RunDir

    run = RunDir.find(args.run)
    if args.command == "unpause":
        run.unpause()
    else:
        state = run.status().get("state")
        if state not in ("queued", "running"):
            raise ValueError(f"run: {run.run_id} is {state}; only a queued or running run can be paused")
        run.pause(args.at_step)
    held = run.paused_from()
    text = f"{run.run_id}: " + ("goes on" if held is None else f"pauses at step {held}" if held else "pauses")
    _print({"run_id": run.run_id, "paused_from": held}, args.json, text)
    return 0


def cmd_delete(args) -> int:
    from .jobs import delete

    delete(args.run)
    _print({"run_id": args.run, "deleted": True}, args.json, f"{args.run}: deleted")
    return 0


def cmd_runs(args) -> int:
    from .jobs import list_runs
    from .runs import ACTIVE_STATES, headline

    rows = list_runs()
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    from .backends import describe, summary

    print(summary(describe()))
    print(f"{'run':54} {'kind':8} {'state':11} {'progress':>10}  accuracy")
    for r in rows:
        progress = f"{r['step'] or 0}/{r['total_steps']}" if r.get("total_steps") else ""
        if kinds.get(r["kind"]).child and r["state"] in ACTIVE_STATES and r.get("progress"):
            progress = f"{r['progress']:.0%} {progress}"  # children done, and how far into the next one
        acc = headline(r["metrics"])
        name = f"  └ {r['id'].rsplit('.', 1)[-1]}" if r.get("parent") else r["id"]
        print(f"{name:54} {r['kind']:8} {r['state']:11} {progress:>10}  {'' if acc is None else f'{acc:.4f}'}")
    return 0


def cmd_compare(args) -> int:
    from .compare import compare, transposed

    if len(args.runs) < 2:
        raise ValueError("runs: give at least two runs to compare")
    rows, differ = compare(args.runs)
    if args.json:
        print(json.dumps({"rows": rows, "settings_that_differ": differ}, default=str))
        return 0
    print(f"{'run':24} " + "  ".join(f"{r['run']:>40}" for r in rows))
    for key, cells in transposed(rows):
        print(f"{key:24} " + "  ".join(f"{c:>40}" for c in cells))
    if not differ:
        print("(the runs have the same settings)")
    return 0


def cmd_logs(args) -> int:
    """A run's log.txt. A pipeline's comes with its stages' logs: one after another, or, following (-f), as they
    grow, each stage's lines prefixed with its name (a pipeline's own log only says when stages start and end)."""
    from .runs import children
    from .runs import TERMINAL_STATES, RunDir

    run = RunDir.find(args.run)
    logs = {run.log_path: ""}
    entry = kinds.of(run)
    if entry.child and not entry.children_apart:  # stages written by this run's own process, in the order they ran
        stages = sorted(children(run), key=lambda r: (r.status().get("started_at") or float("inf"), r.run_id))
        logs.update({stage.log_path: f"{stage.job()['stage']} | " for stage in stages})
    pos = dict.fromkeys(logs, 0)

    def drain(path, prefix: str, whole: bool, header: str = "") -> None:
        try:
            with open(path, "rb") as fh:
                fh.seek(pos[path])
                chunk = fh.read()
        except FileNotFoundError:
            return
        if not whole:  # a line still being written waits for its end, so a prefix never lands mid-line
            chunk = chunk[:chunk.rfind(b"\n") + 1]
        pos[path] += len(chunk)
        if chunk:
            text = chunk.decode("utf-8", errors="replace")
            sys.stdout.write(header + "".join(prefix + line for line in text.splitlines(keepends=True)))
            sys.stdout.flush()

    if not args.follow:
        for i, path in enumerate(logs):
            drain(path, "", True, header=f"\n== {path.parent.name} ==\n" if i else "")
        return 0
    while True:
        done = run.status().get("state") in TERMINAL_STATES  # read before the last drain: no line is missed
        for path, prefix in logs.items():
            drain(path, prefix, whole=done)
        if done:
            return 0
        time.sleep(1.0)


def cmd_presets(args) -> int:
    if args.from_run:  # a run's (a search trial's) settings as a config file train, pipeline and launch take
        from .runs import RunDir

        run = RunDir.find(args.from_run)
        if not kinds.of(run).config_file:
            raise ValueError(f"--from-run: {run.run_id} is a {run.job()['kind']}, not a training run or pipeline")
        print(json.dumps(run.config(), indent=2))
        return 0
    if args.name:  # every field, as a config file: `presets NAME > my.json`, edit, `pipeline --config my.json`
        print(json.dumps(load_preset(args.name).to_dict(), indent=2))
        return 0
    data = {name: {"description": p.get("description", ""), "source": p["source"], "target": p["target"]}
            for name, p in PRESETS.items()}
    _print(data, args.json, "\n".join(f"{n:14} {d['description']}" for n, d in data.items()))
    return 0


def cmd_mlflow_sync(args) -> int:
    from .jobs import reconcile
    from .tracking import sync_all

    reconcile()  # a dead worker's run is interrupted before it is mirrored
    out = sync_all()
    text = (f"{len(out['synced'])} runs mirrored into {out['uri']} (experiment {out['experiment_id']})"
            + (f"; {len(out['running'])} running runs left to their workers" if out["running"] else "")
            + "".join(f"\n  {rid}: {why}" for rid, why in out["failed"].items()))
    _print(out, args.json, text)
    return 1 if out["failed"] else 0


def cmd_mlflow_ui(args) -> int:
    from .tracking import ui_command

    cmd = ui_command(args.host, args.port)
    print(f"MLflow UI on http://{args.host}:{args.port} over {cmd[cmd.index('--backend-store-uri') + 1]}", flush=True)
    os.execv(cmd[0], cmd)


def cmd_app(args) -> int:
    """The Streamlit app, once sign-in is settled for the address it will listen on (core/auth.py)."""
    from .auth import NO_AUTH_ENV, sign_in_mode

    mode = sign_in_mode(args.host, no_auth=args.no_auth)
    env = {**os.environ, NO_AUTH_ENV: "1" if mode == "open" else ""}
    cmd = [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "app.py"), "--server.address", args.host,
           "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    said = {"none": "this machine only", "oidc": "sign-in with st.login (.streamlit/secrets.toml)",
            "password": "sign-in with the password in SENTIMENT_LAB_PASSWORD", "open": "NO sign-in (--no-auth)"}
    print(f"Sentiment Transfer Lab on http://{args.host}:{args.port} · {said[mode]}", flush=True)
    os.chdir(PROJECT_ROOT)
    os.execve(cmd[0], cmd, env)


def cmd_dispatch(args) -> int:
    from .jobs import dispatch_forever

    dispatch_forever()
    return 0


def cmd_send(args) -> int:
    from .backends import describe, summary
    from .jobs import send_queued

    waiting = [r.run_id for r in send_queued()]
    info = describe()
    _print({**info, "queued": waiting}, args.json,
           summary(info) + (f"\nqueued, to start or send: {', '.join(waiting)}" if waiting else ""))
    return 0


def cmd_backend(args) -> int:
    from .backends import describe, summary

    info = describe()
    _print(info, args.json, summary(info))
    return 0 if "error" not in info else 1


def cmd_work(args) -> int:
    from .worker import work

    return work(args.run)


def cmd_train_rank(args) -> int:
    """One rank of a distributed run (started by `accelerate launch`)."""
    from .runs import RunDir
    from .training import run_config, train_run

    run = RunDir.for_id(args.run)
    train_run(run_config(run), run, resume=args.resume)
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # "invalid choice: ... (choose from ...)" lists every subcommand: not the job system's internal ones
        super().error(re.sub(r", '_\w+'", "", message))


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m core", description="Sentiment Transfer Lab engine: everything the app does.",
                 epilog="python -m core COMMAND --help says more of each.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")  # not the internal _commands
    for add in (_job_commands, _model_commands, _run_commands, _lab_commands, _internal_commands):
        add(sub)
    return ap


def _job_commands(sub) -> None:
    """What makes a job: train and pipeline in the foreground, launch any kind, eval, search and curve (their
    options from their settings' schema)."""
    p = sub.add_parser("train", help="fine-tune one model in the foreground")
    _config_args(p)
    _quiet_arg(p)
    p.add_argument("--run-id", help="use this run id instead of a generated one")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("pipeline", help="run the whole transfer experiment in the foreground")
    _config_args(p)
    _quiet_arg(p)
    p.add_argument("--run-id")
    p.set_defaults(func=cmd_pipeline)

    from .config import EvalConfig

    p = sub.add_parser("eval", help="evaluate a run's model on a dataset (zero-shot or not)",
                       description="Score a finished run's model on a dataset. Every field of the evaluation's settings "
                                   "is an option below, or --set FIELD=VALUE; reading fields left out read reviews as "
                                   "the model was trained to.")
    settings_options(p, EvalConfig, "the evaluation's settings")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help="set one of the fields above (repeatable)")
    p.add_argument("--save", action="store_true", help="save metrics and predictions under the run's evals/")
    p.add_argument("--background", action="store_true",
                   help="queue it as a background job (its own run folder, like the Runs page's Evaluate form); "
                        "prints the job's run id")
    p.add_argument("--run-id", help="with --background: the job's run id instead of a generated one")
    p.add_argument("--json", action="store_true")
    _quiet_arg(p)
    p.set_defaults(func=cmd_eval)

    launchable = {name: k for name, k in kinds.kinds().items() if k.launchable}
    p = sub.add_parser("launch", help="queue a job of any kind (train, pipeline, ...) to run in the background")
    p.add_argument("kind", choices=list(launchable), help="; ".join(f"{n}: {k.help}" for n, k in launchable.items()))
    _config_args(p)
    p.add_argument("--run-id")
    p.set_defaults(func=cmd_launch)

    from .curve import CurveConfig
    from .search import DEFAULT_SPACE, SearchConfig

    p = sub.add_parser("search", help="queue an Optuna hyperparameter search (each trial a background run)")
    _config_args(p)
    p.add_argument("--param", dest="params", action="append", default=[], metavar="FIELD=SPEC",
                   help="a field to vary (repeatable). SPEC: LOW:HIGH (floats), LOW:HIGH:log (log scale), "
                        "int:LOW:HIGH (integers), A,B,C (choices). None given: "
                        + " ".join(f"{k}={v}" for k, v in DEFAULT_SPACE.items()))
    settings_options(p, SearchConfig, "the search's settings")
    p.add_argument("--run-id")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("curve", help="queue the data-efficiency curve: transfer and baseline at each label budget")
    _config_args(p)
    settings_options(p, CurveConfig, "the curve's settings")
    p.add_argument("--run-id")
    p.set_defaults(func=cmd_curve)


def _model_commands(sub) -> None:
    """What a finished run's model does: predict, export, push."""
    p = sub.add_parser("predict", help="label reviews given as arguments or on stdin")
    p.add_argument("--run", required=True)
    p.add_argument("texts", nargs="*")
    p.add_argument("--explain", type=int, nargs="?", const=8, default=0, metavar="N",
                   help="also the N words (default 8) that move P(positive) most, each left out in turn "
                        "(reviews up to 200 words); --json gives every word")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="as for eval")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="a finished run's model as a self-contained folder, with its model card")
    p.add_argument("run")
    p.add_argument("--to", required=True, help="a new folder")
    p.add_argument("--onnx", action="store_true", help="also model.onnx, checked against PyTorch on 100 reviews")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("push", help="upload a finished run's exported model to the Hugging Face Hub")
    p.add_argument("run")
    p.add_argument("--repo", required=True, help="USER/NAME or ORG/NAME")
    p.add_argument("--private", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_push)



def _run_commands(sub) -> None:
    """What is done to a job: stop, resume, delete, pause."""
    for name, func, help_ in (("stop", cmd_stop, "stop a running job or cancel a queued one"),
                              ("resume", cmd_resume, "resume a stopped or interrupted job"),
                              ("delete", cmd_delete, "delete a finished run and its stages")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("run")
        p.add_argument("--json", action="store_true")
        if name == "stop":
            p.add_argument("--timeout", type=float, default=120.0, help="seconds before signals are sent")
        p.set_defaults(func=func)

    p = sub.add_parser("pause", help="hold a training run (a pipeline's stage, a search's trials) between two steps, "
                                     "its memory kept, until unpause")
    p.add_argument("run")
    p.add_argument("--at-step", type=int, default=0, metavar="N", help="once it reaches step N (default: now)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pause)
    p = sub.add_parser("unpause", help="let a paused run go on")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pause)



def _lab_commands(sub) -> None:
    """The lab as a whole: its runs, their results and logs, presets, the backend, MLflow, the app."""
    p = sub.add_parser("backend", help="where queued runs run: local, or a Ray cluster (address, free resources)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backend)

    p = sub.add_parser("dispatch", help="start or send the queued runs now (after a Ray cluster was unreachable)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("runs", help="list runs (dead workers are marked interrupted)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("compare", help="runs side by side: figures, and the settings that differ")
    p.add_argument("runs", nargs="+", help="run ids (or unique prefixes)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("results", help="what a job found, finished or so far: a pipeline's comparison table, a "
                                       "search's trials, a curve's points, an evaluation's figures")
    p.add_argument("run", help="the job's id (or a unique prefix)")
    p.add_argument("--flipped", type=int, default=0, metavar="N",
                   help="also the first N target reviews whose label flipped between zero-shot and fine-tuned")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("logs", help="print a run's log")
    p.add_argument("run")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("presets", help="list presets, or print one's (or a run's) every field")
    p.add_argument("name", nargs="?", help="print this preset's whole config (JSON, usable with --config)")
    p.add_argument("--from-run", metavar="RUN_ID",
                   help="print this run's settings (a search's best trial, say) as a config file: "
                        "`presets --from-run ID > best.json`, then `train --config best.json`")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("mlflow-sync", help="mirror every run folder into MLflow (missing or behind), idempotently")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_mlflow_sync)

    p = sub.add_parser("app", help="start the app (make run): sign-in required on any address but 127.0.0.1")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every network)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--no-auth", action="store_true",
                   help="share on a non-loopback address without sign-in (anyone who reaches it can use the lab)")
    p.set_defaults(func=cmd_app)

    p = sub.add_parser("mlflow-ui", help="the MLflow UI over the lab's tracking store (make mlflow)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_mlflow_ui)



def _internal_commands(sub) -> None:
    """Started by the job system, not listed in --help."""
    for name, func in (("_dispatch", cmd_dispatch), ("_work", cmd_work), ("_train_rank", cmd_train_rank)):
        p = sub.add_parser(name)  # internal: started by the job system
        if name != "_dispatch":
            p.add_argument("run")
        if name == "_train_rank":
            p.add_argument("--resume", action="store_true")
        p.set_defaults(func=func)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "quiet", True) is False and not getattr(args, "background", False):
        from .terminal import Terminal

        Terminal.start(sys.stderr)  # stdout keeps the result alone (one JSON object with --json)
    try:
        return args.func(args)
    except ValueError as exc:  # bad input: one line naming the problem, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `python -m core runs | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
