"""How fast the data checks are without tokenization, against a bare `json.loads` pass.

    python -m studio.benchmarks.checks_speed [--rows 1000000] [--repeat 3] [--layout query_response|conversation]

Writes a JSONL file of short R1 rows (one in 50 carries a problem, so the slow paths run too), then times
(a) reading it line by line with `json.loads` and nothing else, and (b) `validate` without lengths (reading,
mapping and checking in one streamed pass), and prints both, their ratio, and the target (at most 3x).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

ROWS = (
    {"query": "Tom has {a} apples and buys {b} more. How many apples does he have now?",
     "response": "<think>\nTom starts with {a}. He buys {b}. {a} + {b} = {s}.\n</think>\n\nThe answer is {s}."},
    {"query": "小明有{a}个苹果，又买了{b}个。他现在一共有几个苹果？",
     "response": "<think>\n小明原来有{a}个，又买了{b}个。{a} + {b} = {s}。\n</think>\n\n答案是：{s}"},
)
BROKEN = {"query": "What is {a} + {b}?", "response": "{a} + {b} = {s}.\n</think>\n\nThe answer is {s}."}


def write_rows(path: str, count: int, layout: str = "query_response", unique: bool = False) -> None:
    """Rows whose numbers cycle (most rows repeat an earlier one, so the duplicate check works hard), or with
    `unique` all different."""
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(count):
            a, b = (index, index // 2) if unique else (index % 97, index % 89)
            shape = BROKEN if index % 50 == 0 else ROWS[index % 2]
            row = {key: value.format(a=a, b=b, s=a + b) for key, value in shape.items()}
            if layout == "conversation":
                row = {"conversation": [{"role": "user", "content": row["query"]},
                                        {"role": "assistant", "content": row["response"]}]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def bare_parse(path: str) -> int:
    count = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            json.loads(line)
            count += 1
    return count


def studio_checks(path: str) -> int:
    """What `validate` and the Data tab do without lengths: rows checked as they are read, in one pass."""
    from studio.data.validate import validate

    return validate(path, lengths=False, prepare=False).rows


def best_of(function, path: str, repeat: int) -> tuple[float, int]:
    times, result = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(path)
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layout", choices=["query_response", "conversation"], default="query_response")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rows.jsonl")
        write_rows(path, args.rows, args.layout)
        bare_seconds, bare_rows = best_of(bare_parse, path, args.repeat)
        check_seconds, checked_rows = best_of(studio_checks, path, args.repeat)
    assert bare_rows == checked_rows == args.rows
    result = {"rows": args.rows, "layout": args.layout, "json_loads_s": round(bare_seconds, 3), "checks_s": round(check_seconds, 3),
              "ratio": round(check_seconds / bare_seconds, 2), "target_ratio": 3.0}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.rows:,} {args.layout} rows: bare json.loads {bare_seconds:.2f} s, studio checks {check_seconds:.2f} s "
              f"-> {result['ratio']}x (target <= 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
