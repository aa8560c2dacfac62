"""The command line. Its flags, JSON fields and exit codes are a contract scripts depend on.

    python -m studio validate PATH [--model MODEL] [--max-length N] [--no-lengths] [--json]
        [--format LAYOUT] [--field KEY=NAME ...] [--export OUT.jsonl [--fix NAME ...] [--layout messages|conversation]]
        exit 0: no row has an error (warnings allowed); 1: some row has one; 2: unreadable input or bad arguments.
    python -m studio train --data PATH --output DIR [--model demo|PATH|HUB_ID] [--method lora|qlora]
        [--epochs N] [--max-steps N] [--lr X] [--lora-r N] [--lora-alpha N] [--max-length N]
        [--batch-size N] [--grad-accum N] [--[no-]packing] [--checkpointing auto|on|offload|off]
        [--save-steps N] [--save-minutes M] [--resume]
        exit 0: trained (or stopped with Ctrl-C, adapter saved); 1: the run failed (cause printed);
        2: bad arguments, what cannot run here (QLoRA without CUDA, a run the estimate says will not fit, a folder
        or missing file as --data, no row without errors), --output already holding a run without --resume, or a
        resume refused (not a run folder, completed, training now); nothing is written then.
    python -m studio runs [--json] [--home DIR]
        the runs in STUDIO_HOME's runs folder (or DIR's, or DIR): name, state, step, loss, adapter, resumable.
    python -m studio chat --adapter DIR [--model demo|PATH|HUB_ID] --prompt TEXT [--max-new-tokens N]
        [--temperature T] [--top-p P] [--seed N] [--json]
        the base and base + LoRA answers to one prompt; temperature 0 is greedy and deterministic.
    python -m studio bench [--model random:qwen2-7b|demo|PATH] [--method lora|qlora] [--data fixed|mix|vary]
        [--steps N] [--seq N] [--batch-size N] [--packing] [--liger] [--checkpointing auto|on|offload|off]
        [--no-fused-lora] [--qlora-upcast] [--attention …] [--profile DIR] [--json]
        tokens/s, peak memory and the share of the compute ceiling through the studio's training path.
    python -m studio bench --chat [--model …] [--adapter DIR] [--new-tokens N] [--prompts N] [--json]
        chat speed: tokens/s per pane with both panes streaming, time to first token, batch compare tokens/s,
        warm-up, GPU memory, beside PEFT's mixed batch and bare generate, and the greedy guard.
"""

from __future__ import annotations

import argparse
import json
import sys

from studio.config import DEFAULT_LENGTH_MODEL, DEFAULT_MAX_LENGTH, DEFAULT_MODEL

EXIT_OK, EXIT_ROW_ERRORS, EXIT_UNREADABLE = 0, 1, 2


def _mapping_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected FIELD=NAME (e.g. prompt=question), got {text!r}")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m studio", description="R1 LoRA Studio command line")
    commands = parser.add_subparsers(dest="command", required=True)

    from studio.data.export import DEFAULT_EXPORT_STYLE, EXPORT_STYLES
    from studio.data.mapping import FORMATS, MAPPING_KEYS
    from studio.data.validate import USER_FIXES

    keys = "; ".join(f"{key}: {about}" for key, about in MAPPING_KEYS.items())
    validate = commands.add_parser(
        "validate", help="check an R1 reasoning dataset (and write a cleaned copy with --export)",
        epilog=f"mapping keys for --field: {keys}. Layouts for --format: {', '.join(FORMATS)}.")
    validate.add_argument("path", help="a .jsonl/.json/.csv/.parquet file or a Hub dataset id (owner/name[:split])")
    validate.add_argument("--model", default=DEFAULT_LENGTH_MODEL,
                          help="whose tokenizer measures lengths: the model you will train — a Hub id, a model folder "
                               f"or demo (default {DEFAULT_LENGTH_MODEL}; offline its vocabulary is built from a "
                               "package, and the report says whether the counts are exact)")
    validate.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                          help=f"training max length in tokens (default {DEFAULT_MAX_LENGTH})")
    validate.add_argument("--no-lengths", action="store_true", help="skip tokenization")
    validate.add_argument("--json", action="store_true", help="print one JSON object")
    validate.add_argument("--format", metavar="LAYOUT", help=f"force the layout instead of detecting it: {', '.join(FORMATS)}")
    validate.add_argument("--field", action="append", type=_mapping_arg, default=[], metavar="KEY=NAME",
                          help="name the field that holds a part, e.g. prompt=question (repeatable; works with or "
                               f"without --format). Keys: {', '.join(MAPPING_KEYS)}")
    validate.add_argument("--export", metavar="OUT.jsonl",
                          help="write the rows left after --fix as JSON Lines, normalized (system, user, assistant "
                               "<think>…</think> answer) with the source row's other fields kept; rows with errors "
                               "are never written")
    validate.add_argument("--fix", action="append", nargs="+", default=[], metavar="NAME",
                          help=f"with --export: fixes to apply first ({', '.join(USER_FIXES)}); repeatable")
    validate.add_argument("--layout", choices=EXPORT_STYLES, default=None,
                          help="with --export: the turns' field name (default: the input's own layout when it is "
                               f"one of these, else {DEFAULT_EXPORT_STYLE})")
    validate.set_defaults(handler=run_validate)

    train = commands.add_parser("train", help="fine-tune with LoRA or QLoRA into a run folder")
    train.add_argument("--data", help="any file `validate` reads; rows with errors are left out")
    train.add_argument("--output", required=True,
                       help="the run folder (config, metrics, checkpoints, adapter); one that already holds a run is "
                            "refused unless --resume")
    train.add_argument("--model", help="demo (default), a model folder or a Hub id")
    train.add_argument("--method", choices=["lora", "qlora"])
    train.add_argument("--epochs", type=float)
    train.add_argument("--max-steps", type=int, help="> 0 overrides --epochs")
    train.add_argument("--lr", type=float, help="learning rate (default 1e-4 LoRA, 2e-4 QLoRA; the demo preset: 2e-3)")
    train.add_argument("--lora-r", type=int)
    train.add_argument("--lora-alpha", type=int)
    train.add_argument("--max-length", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--grad-accum", type=int)
    train.add_argument("--checkpointing", choices=["auto", "on", "offload", "off"],
                       help="gradient checkpointing; offload: on, with the saved inputs in CPU memory; auto (default): "
                            "the fastest setting the estimate says fits the GPU")
    train.add_argument("--packing", action=argparse.BooleanOptionalAction, default=None,
                       help="pack rows into sequences of up to --max-length tokens, padding-free (default: the "
                            "preset's — on for the 7B/8B bases, off for the demo model)")
    train.add_argument("--format", metavar="LAYOUT", help="the data's layout, as for validate (default: detected)")
    train.add_argument("--field", action="append", type=_mapping_arg, default=[], metavar="KEY=NAME",
                       help="name the field that holds a part, as for validate (e.g. prompt=Question; repeatable)")
    train.add_argument("--save-steps", type=int, metavar="N",
                       help="keep a checkpoint (adapter, optimizer, scheduler, RNG) every N steps (default 0: every "
                            "10 %% of the steps)")
    train.add_argument("--save-minutes", type=float, metavar="M",
                       help="and at least every M minutes of training (default 10; 0: no time limit); whichever "
                            "comes first, so a crash loses at most one interval")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --output from its newest complete checkpoint (an older one when "
                            "the newest is cut; from step 0 when it crashed before the first); refused for a "
                            "completed run")
    train.set_defaults(handler=run_train)

    runs = commands.add_parser("runs", help="list the training runs and their state")
    runs.add_argument("--home", metavar="DIR",
                      help="a studio home (its runs/ folder is listed) or a runs folder (default: STUDIO_HOME's)")
    runs.add_argument("--json", action="store_true", help="print one JSON array")
    runs.set_defaults(handler=run_runs)

    cache = commands.add_parser("cache", help="show or clear the prepared training tokens (tokenized once per "
                                              "dataset and tokenizer, reused by every run)")
    cache.add_argument("--clear", action="store_true", help="delete every prepared set")
    cache.add_argument("--json", action="store_true", help='print {"path", "sets", "bytes"}')
    cache.set_defaults(handler=run_cache)

    chat = commands.add_parser("chat", help="ask the base and the base + LoRA the same prompt")
    chat.add_argument("--adapter", required=True, help="a run folder or an adapter folder")
    chat.add_argument("--model", help="the base (default: the run's model, else demo)")
    chat.add_argument("--prompt", required=True)
    chat.add_argument("--max-new-tokens", type=int, help="default 256 for the demo model, 4096 otherwise")
    chat.add_argument("--temperature", type=float, default=0.6, help="0.6 as DeepSeek advises; 0 = greedy")
    chat.add_argument("--top-p", type=float, default=0.95)
    chat.add_argument("--seed", type=int, default=0)
    chat.add_argument("--json", action="store_true", help="print one JSON object")
    chat.set_defaults(handler=run_chat)

    bench = commands.add_parser("bench", help="measure training (or, with --chat, chat) speed and memory")
    bench.add_argument("--chat", action="store_true", help="measure the chat engine instead of training")
    bench.add_argument("--adapter", help="--chat: the LoRA adapter (default: a random rank-32 one for the model)")
    bench.add_argument("--new-tokens", type=int, default=1024, help="--chat: tokens each reply generates")
    bench.add_argument("--prompts", type=int, default=64, help="--chat: prompts in the batch compare (0: none)")
    bench.add_argument("--plain-tokens", type=int, default=128,
                       help="--chat: tokens for the plain paths measured beside (they are slow; 0: none)")
    bench.add_argument("--float32-lora", action="store_true",
                       help="--chat: the adapter in float32, as PEFT computes it (slower on a GPU; LoRA rows then "
                            "round as the plain path's do)")
    bench.add_argument("--model", help="random:qwen2-7b (default on a GPU), random:llama-8b, demo (default on CPU), "
                                       "or a model folder")
    bench.add_argument("--name", default="studio")
    bench.add_argument("--method", choices=["lora", "qlora"], default="lora")
    bench.add_argument("--data", choices=["fixed", "mix", "vary"], default="fixed",
                       help="fixed: every sequence --seq tokens; mix: log-normal lengths, mean about 1.5k, capped at "
                            "--seq; vary: each a little under --seq, a different length every step")
    bench.add_argument("--steps", type=int, default=10)
    bench.add_argument("--seq", type=int, default=4096)
    bench.add_argument("--batch-size", type=int, default=1)
    bench.add_argument("--lora-r", type=int, default=32)
    bench.add_argument("--packing", action="store_true")
    bench.add_argument("--liger", action="store_true")
    bench.add_argument("--checkpointing", choices=["auto", "on", "offload", "off"], default="auto",
                       help="auto: what the training default picks for this GPU (no recompute when it fits); "
                            "offload: checkpointing with the saved inputs in pinned CPU memory")
    bench.add_argument("--no-fused-lora", dest="fused_lora", action="store_false",
                       help="PEFT's own LoRA forward instead of the fused one")
    bench.add_argument("--qlora-upcast", action="store_true",
                       help="QLoRA with PEFT's k-bit preparation (fp32 norms, embeddings and head)")
    bench.add_argument("--attention", choices=["flash", "cudnn", "efficient", "auto", "varlen"], default="varlen",
                       help="varlen: the flash kernel per sequence for packed and unpadded rows (studio.attention); "
                            "otherwise SDPA with that backend first (auto: PyTorch's own order)")
    bench.add_argument("--profile", metavar="DIR", help="profile two steps after warm-up into DIR")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(handler=run_bench_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


def _fail(args, message: str, code: int) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"path": getattr(args, "path", None), "error": message}, ensure_ascii=False))
    else:
        print(f"error: {message}", file=sys.stderr)
    return code


def run_validate(args) -> int:
    from studio.data.checks import LENGTH_FIXES
    from studio.data.export import style_for
    from studio.data.readers import DatasetUnreadable
    from studio.data.validate import USER_FIXES, clean, validate, write_export
    from studio.models import ModelNotFound

    fixes = [name for group in args.fix for item in group for name in item.split(",") if name]
    unknown = sorted(set(fixes) - set(USER_FIXES))
    if unknown:
        return _fail(args, f"unknown fix(es) {', '.join(unknown)}; choose from {', '.join(USER_FIXES)}",
                     EXIT_UNREADABLE)
    if (fixes or args.layout) and not args.export:
        return _fail(args, "--fix and --layout act on the cleaned copy: add --export OUT.jsonl", EXIT_UNREADABLE)
    for name in LENGTH_FIXES:
        if name in fixes and args.no_lengths:
            return _fail(args, f"--fix {name} needs token lengths: leave out --no-lengths", EXIT_UNREADABLE)
    try:
        report = validate(args.path, model=args.model, max_length=args.max_length, lengths=not args.no_lengths,
                          overrides={"format": args.format, **dict(args.field)})
    except (DatasetUnreadable, ValueError) as error:
        return _fail(args, str(error), EXIT_UNREADABLE)
    except ModelNotFound as error:
        return _fail(args, f"{error} (or pass --no-lengths to skip token lengths)", EXIT_UNREADABLE)
    data = report.to_json()
    if args.export:
        try:
            result = clean(report, set(fixes), max_length=args.max_length)
            written = write_export(result, args.export, args.layout or style_for(report.dataset.format),
                                   source=args.path)
        except (ValueError, OSError) as error:
            return _fail(args, f"--export {args.export}: {error}", EXIT_UNREADABLE)
        data["export"] = {"path": args.export, "rows_written": written, "rows_left_out": report.rows - written,
                          "changed": {name: count for name, count in result.changed.items() if count}}
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        print(format_report(report))
        if args.export:
            export = data["export"]
            changed = ", ".join(f"{name} {count}" for name, count in export["changed"].items()) or "nothing changed"
            print(f"  exported {export['rows_written']} of {report.rows} rows to {args.export} ({changed})")
    return EXIT_ROW_ERRORS if report.error_rows else EXIT_OK


def format_report(report, limit: int = 20) -> str:
    """A terminal summary: format, counts per code with why it matters, the first problem rows."""
    from studio.data.checks import CODES

    data = report.to_json()
    lines = [
        f"{data['path']}",
        f"  format: {data['format']}",
        *([f"  mapping: {report.dataset.mapping.describe()}"] if report.dataset.mapping else []),
        *([f"  runner-up: {report.dataset.alternatives[0].describe()}"] if report.dataset.alternatives else []),
        *([f"  not all of the file was read: {report.dataset.not_read}"] if report.dataset.not_read else []),
        f"  rows: {data['rows']}   valid (no error): {data['valid_rows']}   "
        f"with errors: {data['rows'] - data['valid_rows']}",
    ]
    if data["summary"]:
        lines.append("  issues:")
        for code, count in data["summary"].items():
            info = CODES[code]
            lines.append(f"    {code:<24} {count:>7}  {info.severity:<7}  {info.why}")
    else:
        lines.append("  no issues found")
    lengths = data["lengths"]
    if lengths and lengths.get("count"):
        lines.append(
            f"  tokens: p50 {lengths['p50']}  p90 {lengths['p90']}  p99 {lengths['p99']}  max {lengths['max']}  "
            f"over max_length {lengths['max_length']}: {lengths['over_max_length']}")
        lines.append(f"  measured with: {lengths.get('tokenizer')} ({'exact' if lengths.get('exact') else 'an estimate'})")
    if report.issues:
        lines.append(f"  first {min(limit, len(report.issues))} of {len(report.issues)} issues:")
        lines.extend(f"    [{issue.severity}] {issue.code}: {issue.message}" for issue in report.issues[:limit])
    return "\n".join(lines)


TRAIN_FLAGS = {"data": "data", "model": "model", "method": "method", "epochs": "epochs", "max_steps": "max_steps",
               "lr": "learning_rate", "lora_r": "lora_r", "lora_alpha": "lora_alpha", "max_length": "max_length",
               "batch_size": "batch_size", "grad_accum": "grad_accum", "packing": "packing",
               "save_steps": "save_steps", "save_minutes": "save_minutes"}


def run_train(args) -> int:
    import signal

    from studio.runs import COMPLETED, STOPPED, RunFolder
    from studio.train.job import JobBusy, ResumeRefused, TrainConfig, TrainingJob, default_config, start_refusal

    given = {field: getattr(args, flag) for flag, field in TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    mapping = {key: value for key, value in {"format": args.format, **dict(args.field)}.items() if value}
    if mapping:
        given["mapping"] = mapping
    if args.checkpointing:
        from studio.train.job import CHECKPOINTING

        given["gradient_checkpointing"], given["offload_checkpoints"] = CHECKPOINTING[args.checkpointing]
    try:
        if args.resume:
            folder = RunFolder(args.output)
            refusal = folder.resume_refusal()  # reads only: a refused resume touches nothing of the run
            if refusal:
                return _fail(args, refusal, EXIT_UNREADABLE)
            config = TrainConfig.from_json({**folder.read_config(), **given, "output": args.output})
        else:
            if not args.data:
                return _fail(args, "--data is required (a dataset file) unless --resume", EXIT_UNREADABLE)
            if RunFolder(args.output).is_run():  # never train over a run: its checkpoints and adapter are kept
                return _fail(args, f"{args.output} already holds a run: pass --resume to continue it, or another "
                                   "--output", EXIT_UNREADABLE)
            config = default_config(output=args.output, **given)
        job = TrainingJob(config, resume=args.resume, show_progress_bar=True)
        # What cannot run here (the Train tab's badge says the same), before the output folder is made.
        refusal = start_refusal(config)
        if refusal:
            return _fail(args, refusal, EXIT_UNREADABLE)
    except (ValueError, TypeError) as error:
        return _fail(args, str(error), EXIT_UNREADABLE)

    def stop_gracefully(signum, frame):
        print("\nStopping after this step (Ctrl-C again to abort)…", file=sys.stderr)
        job.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, stop_gracefully)
    try:
        status = job.run()
    except (JobBusy, ResumeRefused) as error:  # raised before the run folder is touched
        return _fail(args, str(error), EXIT_UNREADABLE)
    data = job.data_summary
    if data:
        print(f"data: {data['rows_read']} rows read, {data['rows_left_out']} left out (rows with errors), "
              f"{data['rows_truncated']} cut at max_length {config.max_length}; {data['train_rows']} train / "
              f"{data['eval_rows']} eval; tokens "
              + ("reused from" if data.get("tokens_reused") else "prepared in") + f" {data.get('prepared')}")
        if data.get("not_read"):
            print(f"warning: not all of the file was read: {data['not_read']}", file=sys.stderr)
    if status["state"] in (COMPLETED, STOPPED):
        print(status["message"])
        return EXIT_OK
    print(f"error: {status.get('cause')}\nfix: {status.get('fix')}", file=sys.stderr)
    return EXIT_ROW_ERRORS


def run_cache(args) -> int:
    from studio.data.prepared import cache_info, clear_cache

    freed = clear_cache() if args.clear else None
    info = cache_info()
    if args.json:
        print(json.dumps({**info, **({"freed_bytes": freed} if freed is not None else {})}))
    elif freed is not None:
        print(f"cleared {freed / 2**20:,.1f} MiB of prepared tokens from {info['path']}")
    else:
        print(f"{info['sets']} prepared set(s), {info['bytes'] / 2**20:,.1f} MiB, in {info['path']}")
    return EXIT_OK


RUN_FIELDS = ("name", "state", "step", "max_steps", "last_loss", "has_adapter", "resumable", "checkpoint", "model",
              "method", "started", "message", "path")


def run_runs(args) -> int:
    from pathlib import Path

    from studio.config import RUNS_DIR
    from studio.runs import list_runs

    runs_dir = RUNS_DIR
    if args.home:
        home = Path(args.home).expanduser()
        if not home.is_dir():
            return _fail(args, f"--home {args.home}: no such folder", EXIT_UNREADABLE)
        runs_dir = home / "runs" if (home / "runs").is_dir() else home
    runs = [{key: run.get(key) for key in RUN_FIELDS} for run in list_runs(runs_dir)]
    if args.json:
        print(json.dumps(runs, ensure_ascii=False))
        return EXIT_OK
    if not runs:
        print(f"no runs in {runs_dir}")
        return EXIT_OK
    rows = [("run", "state", "step", "last loss", "adapter", "resumable")]
    for run in runs:
        loss = "—" if run["last_loss"] is None else f"{run['last_loss']:.4f}"
        rows.append((run["name"], run["state"], f"{run['step'] or 0}/{run['max_steps'] or '?'}", loss,
                     "yes" if run["has_adapter"] else "no", "yes" if run["resumable"] else "no"))
    widths = [max(len(str(row[column])) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return EXIT_OK


def run_chat(args) -> int:
    from studio.config import DEMO_MODEL
    from studio.chat.export import run_config_for
    from studio.chat.generate import BASE, DEMO_MAX_NEW_TOKENS, GPU_MAX_NEW_TOKENS, LORA, ChatEngine, SamplingSettings
    from studio.chat.generate import resolve_adapter
    from studio.models import ModelNotFound

    try:
        adapter = resolve_adapter(args.adapter)
        model = args.model or run_config_for(adapter).get("model") or DEMO_MODEL
        default_tokens = DEMO_MAX_NEW_TOKENS if model == DEMO_MODEL else GPU_MAX_NEW_TOKENS
        settings = SamplingSettings(
            max_new_tokens=default_tokens if args.max_new_tokens is None else args.max_new_tokens,
            temperature=args.temperature, top_p=args.top_p, seed=args.seed)
        engine = ChatEngine()
        engine.load(model, str(adapter))
    except (ValueError, ModelNotFound) as error:
        return _fail(args, str(error), EXIT_UNREADABLE)
    conversation = [{"role": "user", "content": args.prompt}]
    replies = engine.answer({BASE: conversation, LORA: conversation}, settings)
    if args.json:
        print(json.dumps({"prompt": args.prompt, "model": model, "adapter": str(adapter),
                          **{side: reply.to_json() for side, reply in replies.items()}}, ensure_ascii=False))
        return EXIT_OK
    for side, reply in replies.items():
        print(f"=== {side.upper()} ({reply.tokens} tokens, {reply.tokens_per_s:.1f} tokens/s)")
        print(f"[reasoning] {reply.reasoning}\n[answer] {reply.answer or '(none: the reasoning did not finish)'}\n")
    return EXIT_OK


def run_bench_command(args) -> int:
    if args.chat:
        return run_chat_bench_command(args)
    from studio.train.bench import print_results, run_bench
    from studio.train.job import CHECKPOINTING

    try:
        result = run_bench(name=args.name, model=args.model, method=args.method, data=args.data, steps=args.steps,
                           seq=args.seq, batch_size=args.batch_size, lora_r=args.lora_r, lora_alpha=args.lora_r,
                           packing=args.packing, liger=args.liger,
                           gradient_checkpointing=CHECKPOINTING[args.checkpointing][0],
                           offload=CHECKPOINTING[args.checkpointing][1],
                           fused_lora=args.fused_lora, qlora_upcast=args.qlora_upcast,
                           attention=args.attention, profile_dir=args.profile)
    except (ValueError, RuntimeError) as error:
        return _fail(args, str(error), EXIT_ROW_ERRORS)
    print_results([result], args.json)
    return EXIT_OK


def run_chat_bench_command(args) -> int:
    from studio.chat.bench import print_chat_bench, run_chat_bench

    if args.new_tokens < 1:
        return _fail(args, "--new-tokens must be at least 1", EXIT_ROW_ERRORS)
    for name in ("prompts", "plain_tokens"):  # 0 leaves that part out
        if getattr(args, name) < 0:
            return _fail(args, f"--{name.replace('_', '-')} must be 0 (left out) or more", EXIT_ROW_ERRORS)
    try:
        result = run_chat_bench(model=args.model, adapter=args.adapter, new_tokens=args.new_tokens,
                                prompts=args.prompts, plain_tokens=args.plain_tokens,
                                float32_lora=args.float32_lora)
    except (ValueError, RuntimeError) as error:
        return _fail(args, str(error), EXIT_ROW_ERRORS)
    print_chat_bench(result, args.json)
    return EXIT_OK
