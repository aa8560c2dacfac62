"""Peak memory and time of `python -m studio validate` (default settings: lengths on, the default model) on
hostile inputs, each in its own subprocess.

    python -m studio.benchmarks.hostile_inputs [--only NAME ...] [--limit-gb 8] [--json]

The inputs, built in a temporary folder:
- parquet-bomb: 521 bytes of Parquet, 5,000 rows sharing one 100k-character reply (dictionary-encoded, zstd),
  500 MB once expanded;
- jsonl-one-line: a single 99 MB JSONL line (one row with a 99M-character reply);
- json-array: a 99 MB JSON array of ~1,000 rows of ~100k characters, all different (all of them are tokenized);
- json-array-huge-rows: a 99 MB JSON array of 2 good rows around 45 rows of 2.2 MB each (over the row limit);
- csv-bad-byte: a CSV of 1,000 rows, one with a byte that is not UTF-8;
- unknown-layout: 30 MB of JSON rows whose fields fit no layout (2.2M tiny rows: past the row limit).

Each child runs under an address-space limit (--limit-gb) so a regression cannot take the machine down; its
peak RSS comes from os.wait4 in a small launcher it is forked from (see LAUNCHER). The studio's target: under
2 GiB each, with a report or a clear message.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TARGET_MIB = 2048
REPLY_CHARS = 100_000
WORDS = ("the", "sum", "of", "three", "and", "five", "is", "eight", "so", "we", "check", "again", "wait", "maybe",
         "carry", "one", "digit", "square", "root", "prime", "because", "therefore", "let", "x", "be")


def reply(chars: int, seed: int) -> str:
    """An R1 reply of about `chars` characters of varied words."""
    rng = random.Random(seed)
    words, size = [], 0
    while size < chars:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return f"<think>\n{' '.join(words)}\n</think>\n\nThe answer is {seed}."


def parquet_bomb(path: Path, rows: int = 5000, chars: int = REPLY_CHARS) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = "<think>\n" + "x" * (chars - 30) + "\n</think>\n\nThe answer."
    indices = pa.array([0] * rows, type=pa.int32())  # built as a dictionary: this process never expands it either
    table = pa.table({"query": pa.DictionaryArray.from_arrays(indices, pa.array(["What is it?"])),
                      "response": pa.DictionaryArray.from_arrays(indices, pa.array([text]))})
    # Without the stored Arrow schema the columns read back as plain strings, as in a file any writer makes.
    pq.write_table(table, path, compression="zstd", use_dictionary=True, store_schema=False)
    return path


def jsonl_one_line(path: Path, size: int = 99_000_000, good: int = 0) -> Path:
    """One line of `size` bytes (a row with one huge reply), then `good` ordinary lines."""
    with open(path, "w", encoding="utf-8") as handle:
        head = '{"query": "What is it?", "response": "<think>\\n'
        tail = '\\n</think>\\n\\nThe answer."}\n'
        handle.write(head)
        filler = size - len(head) - len(tail)
        block = "y" * (1 << 20)
        while filler > 0:
            handle.write(block[:filler])
            filler -= len(block)
        handle.write(tail)
        for index in range(good):
            handle.write(json.dumps({"query": f"What is {index} + 1?", "response": reply(200, index)}) + "\n")
    return path


def json_array(path: Path, size: int = 99_000_000, chars: int = REPLY_CHARS) -> Path:
    """A JSON array of distinct rows of about `chars` characters, `size` bytes in all."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[")
        written, index = 1, 0
        while written < size:
            row = json.dumps({"query": f"Question {index}?", "response": reply(chars, index)})
            handle.write(("," if index else "") + row)
            written += len(row) + 1
            index += 1
        handle.write("]")
    return path


def json_array_huge_rows(path: Path, size: int = 99_000_000, row_bytes: int = 2_200_000) -> Path:
    """Good rows first and last, rows over the row limit between them."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[" + json.dumps({"query": "What is 1 + 1?", "response": reply(200, 1)}))
        written, index = 1, 0
        while written < size - 2 * row_bytes:
            row = json.dumps({"query": f"Big {index}?", "response": "<think>\n" + "z" * row_bytes + "\n</think>\n\nok"})
            handle.write("," + row)
            written += len(row) + 1
            index += 1
        handle.write("," + json.dumps({"query": "What is 2 + 2?", "response": reply(200, 2)}) + "]")
    return path


def csv_bad_byte(path: Path, rows: int = 1000, bad: int = 500) -> Path:
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["query", "response"])
    for index in range(1, rows + 1):
        writer.writerow([f"What is {index} + 1?", reply(300, index).replace("eight", "eight\nmore")])
    data = text.getvalue().encode("utf-8")
    marker = f"What is {bad} + 1?".encode()
    at = data.index(marker) + len(marker) - 1
    path.write_bytes(data[:at] + b"\xff" + data[at:])  # a Latin-1 byte in record `bad`'s prompt
    return path


def unknown_layout(path: Path, size: int = 30_000_000) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        index = 0
        while handle.tell() < size:
            handle.write('{"x":%d}\n' % index)
            index += 1
    return path


INPUTS = {
    "parquet-bomb": ("bomb.parquet", parquet_bomb),
    "jsonl-one-line": ("one-line.jsonl", jsonl_one_line),
    "json-array": ("rows.json", json_array),
    "json-array-huge-rows": ("huge-rows.json", json_array_huge_rows),
    "csv-bad-byte": ("bad-byte.csv", csv_bad_byte),
    "unknown-layout": ("unknown.jsonl", unknown_layout),
}


# A small process between this one and the child: a child's peak RSS (ru_maxrss) counts the RSS of the process
# it was forked from (Linux records the old address space's high-water mark at exec), so the child is forked from
# this ~10 MB launcher, never from a parent that may hold hundreds of MB. It applies the address-space limit
# and the timeout, and prints the child's rc, peak RSS and wall time as JSON.
LAUNCHER = r"""
import json, os, resource, subprocess, sys, time
limit, timeout, output, command = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
def limits():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
with open(output, "wb") as handle:
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, preexec_fn=limits)
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout:
            child.kill()
            pid, status, usage = os.wait4(child.pid, 0)
            break
        time.sleep(0.02)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "peak_rss_kib": usage.ru_maxrss,
                  "wall_s": time.perf_counter() - start}))
"""


def run_validate(path: Path, *args: str, limit_gb: float = 8.0, timeout: float = 600.0) -> dict:
    """`python -m studio validate PATH ARGS` in a subprocess: rc, peak RSS (MiB), wall seconds, its output."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.NamedTemporaryFile(prefix="validate-", suffix=".out") as out:
        launched = subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, str(int(limit_gb * (1 << 30))), str(timeout), out.name,
             sys.executable, "-m", "studio", "validate", str(path), *args],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout + 60)
        if launched.returncode:
            raise RuntimeError(f"the launcher failed: {launched.stderr.strip()[-500:]}")
        measured = json.loads(launched.stdout)
        output = Path(out.name).read_bytes().decode("utf-8", "replace")
    return {"rc": measured["rc"], "peak_rss_mib": round(measured["peak_rss_kib"] / 1024),
            "wall_s": round(measured["wall_s"], 1), "output": output}


def summary_of(output: str) -> str:
    """The report's rows line and issue counts, or the error line."""
    keep = []
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rows:", "error:")) or (line.startswith("    ") and not line.startswith("    [")
                                                          and stripped.split(" ")[0].islower()):
            keep.append(" ".join(stripped.split()[:2 if not stripped.startswith(("rows:", "error:")) else 99]))
        if stripped.startswith("Traceback"):
            keep.append(output.strip().splitlines()[-1][:200])
            break
    return "; ".join(keep)[:400]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(INPUTS), help="run these inputs only")
    parser.add_argument("--limit-gb", type=float, default=8.0, help="address-space limit of each child (GiB)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
        for name in args.only or INPUTS:
            filename, build = INPUTS[name]
            path = build(Path(folder) / filename)
            measured = run_validate(path, limit_gb=args.limit_gb)
            result = {"input": name, "bytes": path.stat().st_size, **{key: value for key, value in measured.items()
                                                                       if key != "output"},
                      "under_target": measured["peak_rss_mib"] < TARGET_MIB, "report": summary_of(measured["output"])}
            results.append(result)
            path.unlink()
            if not args.json:
                print(f"{name:<22} {result['bytes']:>12,} B  peak {result['peak_rss_mib']:>6,} MiB  "
                      f"{result['wall_s']:>6.1f} s  rc {result['rc']}  {result['report']}", flush=True)
    if args.json:
        print(json.dumps(results))
    return 0 if all(result["under_target"] for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
