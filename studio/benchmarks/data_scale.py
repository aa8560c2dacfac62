"""Data at real scale: what preparing a dataset for `studio train` costs in memory and time, and what a second
run on the same data costs.

    python -m studio.benchmarks.data_scale [--rows 20000] [--tokens 4096 | --mix] [--max-length 4096]
                                           [--model demo] [--check-rows 1000000]

Writes synthetic R1 rows (studio.benchmarks.synthetic_data: every row at least --tokens tokens, or --mix: a
log-normal mix with mean ≈ 1.5k), then, each in a fresh process so that peak memory is its own:

1. a bare batched tokenizer pass over the same texts (the prompt, reasoning and answer parts training
   tokenizes, LENGTH_BATCH_CHARS at a time), timing the tokenizer calls only;
2. the first run's preparation — `prepare_data`, what `studio train` does before loading the model: read,
   check, tokenize and write the prepared set — its wall time, peak RSS, and the tokenizing pass alone;
3. the second run's preparation on the same file (the prepared set found by its key);
4. with --check-rows N, `validate` of N short rows with lengths on (the Data tab's check).

Prints one JSON object. Targets on a 2-core machine (demo tokenizer): 20k rows at max_length 4096 prepared
at ≤ 1.5 GiB; 100k rows of ≈ 1.5k tokens (--mix) at ≤ 2 GiB; tokenizing within 1.2x the bare pass; the
second run ≤ 10 % of the first's preparation; 1M short rows checked at ≤ 1 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, os, resource, sys, time
job, data, model, max_length = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
from studio.models import load_tokenizer
tokenizer = load_tokenizer(model)
out = {}
# The preparing children read as training does (studio.data.prepared.training_limits), past a check's limits.
from studio.data.prepared import training_limits
from studio.data.readers import reading_limits
limits = reading_limits(*training_limits())  # held: a context manager left to the collector would reset it
if job != "check":
    limits.__enter__()
if job == "bare":
    from studio.config import LENGTH_BATCH_CHARS
    from studio.data.checks import trainable_messages
    from studio.data.template import training_parts
    from studio.data.validate import validate
    report = validate(data, lengths=False, prepare=False)
    errors = report.error_rows
    conversations = [trainable_messages(r.messages) for r in report.dataset.records if r.number not in errors]
    del report
    seconds, tokens, start = 0.0, 0, 0
    while start < len(conversations):
        chars, end = 0, start
        while end < len(conversations) and (end == start or chars < LENGTH_BATCH_CHARS):
            chars += sum(len(m["content"]) for m in conversations[end]); end += 1
        parts = list(zip(*[training_parts(tokenizer, c) for c in conversations[start:end]]))
        began = time.perf_counter()
        for column in parts:
            tokens += sum(len(ids) for ids in tokenizer(list(column), add_special_tokens=False)["input_ids"])
        seconds += time.perf_counter() - began
        start = end
    out.update(tokenize_s=seconds, tokens=tokens, rows=len(conversations))
elif job == "steps":
    import sys as _sys
    from studio.data.checks import measure_lengths
    from studio.data.prepared import PreparedWriter, source_key
    from studio.data.validate import validate
    began = time.perf_counter()
    report = validate(data, lengths=False, prepare=False)
    out["read_and_check_s"] = time.perf_counter() - began
    out["rows"] = report.rows
    writer = PreparedWriter(source_key(data, None, tokenizer) + "-steps")
    began = time.perf_counter()
    from studio.data.records import paused_gc
    with paused_gc():
        measure_lengths(report, tokenizer, _sys.maxsize, keep=writer)
    out["tokenize_and_write_s"] = time.perf_counter() - began
    began = time.perf_counter()
    writer.finish(report, {})
    out["finish_s"] = time.perf_counter() - began
elif job in ("first", "second"):
    from studio.train.job import default_config, prepare_data
    from studio.train.packing import PackedRows
    config = default_config(data, os.devnull, model=model, max_length=max_length)
    began = time.perf_counter()
    prepared = prepare_data(config, tokenizer)
    PackedRows(prepared.train, max_length)  # the packing plan too: what a packed run needs before its first step
    out.update(seconds=time.perf_counter() - began, reused=prepared.reused, train_rows=len(prepared.train),
               rows_read=prepared.rows_read, not_read=prepared.not_read, truncated=prepared.rows_truncated)
elif job == "check":
    from studio.data.validate import validate
    began = time.perf_counter()
    report = validate(data, model=model, max_length=max_length, lengths=True)
    out.update(seconds=time.perf_counter() - began, rows=report.rows)
out["peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print(json.dumps(out))
"""


def child(job: str, data: str, model: str, max_length: int, environment: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, job, data, model, str(max_length)], env=environment,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    from studio.benchmarks.checks_speed import write_rows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="rows to prepare (0: only the check)")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--mix", action="store_true", help="lengths from a log-normal mix, mean ≈ 1.5k tokens")
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--check-rows", type=int, default=0, help="also check this many short rows (lengths on)")
    parser.add_argument("--unique", action="store_true",
                        help="the checked rows all differ (by default they repeat as checks_speed writes them)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="studio-data-scale-") as scratch:
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", "STUDIO_PREPARED_DIR": os.path.join(scratch, "prepared"),
                       "STUDIO_HOME": os.path.join(scratch, "home"),
                       "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
        result = {"rows": args.rows, "max_length": args.max_length, "model": args.model}
        if args.rows:
            result.update(prepare(scratch, args, environment))
        if args.check_rows:
            short = os.path.join(scratch, "short.jsonl")
            write_rows(short, args.check_rows, unique=args.unique)
            started = time.perf_counter()
            check = child("check", short, args.model, args.max_length, environment)
            result.update(check_rows=args.check_rows, check_unique=args.unique, check_s=round(check["seconds"], 1),
                          check_peak_mib=check["peak_mib"], check_wall_s=round(time.perf_counter() - started, 1))
        print(json.dumps(result))
    return 0


def prepare(scratch: str, args, environment: dict) -> dict:
    """The preparing runs (bare pass, steps, first and second run) on args.rows synthetic rows."""
    from studio.benchmarks.synthetic_data import write

    data = os.path.join(scratch, "rows.jsonl")
    write(data, args.rows, args.tokens, args.mix)
    result = {"shape": "mix" if args.mix else f"≥{args.tokens} tokens",
              "file_mib": round(os.path.getsize(data) / 2**20, 1)}
    bare = child("bare", data, args.model, args.max_length, environment)
    steps = child("steps", data, args.model, args.max_length, environment)
    first = child("first", data, args.model, args.max_length, environment)
    second = child("second", data, args.model, args.max_length, environment)
    result.update(
        tokens=bare["tokens"], rows_tokenized=[bare["rows"], steps["rows"]],
        bare_tokenize_s=round(bare["tokenize_s"], 2),
        read_and_check_s=round(steps["read_and_check_s"], 2),
        tokenize_and_write_s=round(steps["tokenize_and_write_s"], 2),
        tokenize_over_bare=round(steps["tokenize_and_write_s"] / bare["tokenize_s"], 2),
        rows_read=first["rows_read"], not_read=first["not_read"],
        first_run_s=round(first["seconds"], 2), first_run_peak_mib=first["peak_mib"],
        second_run_s=round(second["seconds"], 3), second_run_peak_mib=second["peak_mib"],
        second_reused=second["reused"], second_over_first=round(second["seconds"] / first["seconds"], 3))
    return result


if __name__ == "__main__":
    sys.exit(main())
