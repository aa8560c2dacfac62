"""The command line. Its flags, JSON fields and exit codes are a contract scripts depend on.

    python -m studio validate PATH [--model MODEL] [--max-length N] [--no-lengths] [--json]
        exit 0: no row has an error (warnings allowed); 1: some row has one; 2: unreadable input.
    python -m studio train --data PATH --output DIR [--model demo|PATH|HUB_ID] [--method lora|qlora]
        [--epochs N] [--max-steps N] [--lr X] [--lora-r N] [--lora-alpha N] [--max-length N]
        [--batch-size N] [--grad-accum N] [--resume]
        exit 0: trained (or stopped with Ctrl-C, adapter saved); 1: the run failed (cause printed);
        2: bad arguments or nothing to resume.
"""

from __future__ import annotations

import argparse
import json
import sys

from studio.config import DEFAULT_MAX_LENGTH, DEFAULT_MODEL

EXIT_OK, EXIT_ROW_ERRORS, EXIT_UNREADABLE = 0, 1, 2


def _mapping_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected FIELD=NAME (e.g. prompt=question), got {text!r}")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m studio", description="R1 LoRA Studio command line")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check an R1 reasoning dataset")
    validate.add_argument("path", help="a .jsonl/.json/.csv/.parquet file or a Hub dataset id (owner/name[:split])")
    validate.add_argument("--model", default=DEFAULT_MODEL,
                          help="whose tokenizer measures lengths: demo, a model folder or a Hub id (default: demo)")
    validate.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                          help=f"training max length in tokens (default {DEFAULT_MAX_LENGTH})")
    validate.add_argument("--no-lengths", action="store_true", help="skip tokenization")
    validate.add_argument("--json", action="store_true", help="print one JSON object")
    validate.add_argument("--format", help="force the format instead of detecting it")
    validate.add_argument("--field", action="append", type=_mapping_arg, default=[], metavar="FIELD=NAME",
                          help="override a field of the mapping, e.g. prompt=question (repeatable)")
    validate.set_defaults(handler=run_validate)

    train = commands.add_parser("train", help="fine-tune with LoRA or QLoRA into a run folder")
    train.add_argument("--data", help="any file `validate` reads; rows with errors are left out")
    train.add_argument("--output", required=True, help="the run folder (config, metrics, checkpoints, adapter)")
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
    train.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    train.set_defaults(handler=run_train)
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
    from studio.models import ModelNotFound
    from studio.records import DatasetUnreadable
    from studio.validate import validate

    try:
        report = validate(args.path, model=args.model, max_length=args.max_length, lengths=not args.no_lengths,
                          overrides={"format": args.format, **dict(args.field)})
    except (DatasetUnreadable, ValueError) as error:
        return _fail(args, str(error), EXIT_UNREADABLE)
    except ModelNotFound as error:
        return _fail(args, f"{error} (or pass --no-lengths to skip token lengths)", EXIT_UNREADABLE)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print(format_report(report))
    return EXIT_ROW_ERRORS if report.error_rows else EXIT_OK


def format_report(report, limit: int = 20) -> str:
    """A terminal summary: format, counts per code with why it matters, the first problem rows."""
    from studio.checks import CODES

    data = report.to_json()
    lines = [
        f"{data['path']}",
        f"  format: {data['format']}" + (f"  ({report.dataset.mapping.describe()})" if report.dataset.mapping else ""),
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
    if report.issues:
        lines.append(f"  first {min(limit, len(report.issues))} of {len(report.issues)} issues:")
        lines.extend(f"    [{issue.severity}] {issue.code}: {issue.message}" for issue in report.issues[:limit])
    return "\n".join(lines)


TRAIN_FLAGS = {"data": "data", "model": "model", "method": "method", "epochs": "epochs", "max_steps": "max_steps",
               "lr": "learning_rate", "lora_r": "lora_r", "lora_alpha": "lora_alpha", "max_length": "max_length",
               "batch_size": "batch_size", "grad_accum": "grad_accum"}


def run_train(args) -> int:
    import signal

    from studio.runs import COMPLETED, STOPPED, RunFolder
    from studio.training import TrainConfig, TrainingJob, default_config

    given = {field: getattr(args, flag) for flag, field in TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    try:
        if args.resume:
            folder = RunFolder(args.output)
            if folder.latest_checkpoint() is None:
                return _fail(args, f"{args.output} has no checkpoint to resume from (a run saves one when "
                                   "stopped, and every --save-steps)", EXIT_UNREADABLE)
            config = TrainConfig.from_json({**folder.read_config(), **given, "output": args.output})
        else:
            if not args.data:
                return _fail(args, "--data is required (a dataset file) unless --resume", EXIT_UNREADABLE)
            config = default_config(output=args.output, **given)
        job = TrainingJob(config, resume=args.resume, show_progress_bar=True)
    except (ValueError, TypeError) as error:
        return _fail(args, str(error), EXIT_UNREADABLE)

    def stop_gracefully(signum, frame):
        print("\nStopping after this step (Ctrl-C again to abort)…", file=sys.stderr)
        job.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, stop_gracefully)
    status = job.run()
    data = job.data_summary
    if data:
        print(f"data: {data['rows_read']} rows read, {data['rows_left_out']} left out (rows with errors), "
              f"{data['rows_truncated']} cut at max_length {config.max_length}; {data['train_rows']} train / "
              f"{data['eval_rows']} eval")
    if status["state"] in (COMPLETED, STOPPED):
        print(status["message"])
        return EXIT_OK
    print(f"error: {status.get('cause')}\nfix: {status.get('fix')}", file=sys.stderr)
    return EXIT_ROW_ERRORS
