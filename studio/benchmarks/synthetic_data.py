"""Synthetic R1-shaped rows of a chosen token length, for throughput checks.

    python -m studio.benchmarks.synthetic_data OUT.jsonl [--rows 64] [--tokens 4096] [--mix | --vary]

`--tokens N`: every row is at least N tokens of training text (training cuts it at max_length, so each
step holds exactly max_length tokens). `--mix`: lengths drawn from a log-normal with mean ≈ 1.5k tokens,
capped at 4096 — the shape of real R1 distillation sets (short prompts, reasoning of a few hundred to a
few thousand tokens). `--vary`: every row a little under N tokens (about 93-99 %), a different length each
step, as a real set of long rows gives — to measure what changing shapes cost against `--tokens` alone.
"""

from __future__ import annotations

import argparse
import json
import math
import random

WORDS = ("so", "then", "we", "add", "check", "the", "sum", "carry", "next", "digit", "wait", "let", "me",
         "verify", "again", "first", "number", "is", "equals", "therefore")
TOKENS_PER_WORD = 2.65  # measured with the demo tokenizer on this word list; only used to size rows


def mixed_length(rng: random.Random, mean: float = 1500, cap: int = 4096) -> int:
    sigma = 0.8
    mu = math.log(mean) - sigma ** 2 / 2  # so that the log-normal's mean is `mean`
    return max(64, min(cap, int(rng.lognormvariate(mu, sigma))))


def make_row(rng: random.Random, tokens: int) -> dict:
    words = " ".join(rng.choice(WORDS) for _ in range(int(tokens / TOKENS_PER_WORD)))
    return {"query": f"What is {rng.randint(10, 99)} + {rng.randint(10, 99)}? Think it through.",
            "response": f"<think>\n{words}\n</think>\n\nThe answer is {rng.randint(20, 198)}."}


VARY_SIZE_FRACTION = (1.05, 1.10)  # make_row sizes: 93-99 % of `tokens` with the demo tokenizer (measured)


def write(path: str, rows: int, tokens: int | None, mix: bool, seed: int = 0, vary: bool = False) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(rows):
            if mix:
                length = mixed_length(rng)
            elif vary:
                length = int(tokens * rng.uniform(*VARY_SIZE_FRACTION))
            else:
                length = int(tokens * 1.3)  # over: training cuts each row to exactly max_length
            handle.write(json.dumps(make_row(rng, length)) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--mix", action="store_true")
    parser.add_argument("--vary", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write(args.out, args.rows, args.tokens, args.mix, args.seed, args.vary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
