"""Host time per LoRA layer call: PEFT's forward against the fused LoRA linear, on tensors small enough that the
arithmetic is negligible — what is left is Python and dispatcher work, which a GPU waits for when it outruns it.

    python -m studio.benchmarks.lora_host_overhead [--autocast] [--calls 200]

Prints microseconds per layer for a forward with backward, for each path.
"""

from __future__ import annotations

import argparse
import time

import torch

LAYERS = 50


def build(fused: bool):
    from peft import LoraConfig, get_peft_model

    from studio.train.fastlora import enable_fused_lora

    stack = torch.nn.Sequential(*[torch.nn.Linear(16, 16, bias=False) for _ in range(LAYERS)])
    model = get_peft_model(stack, LoraConfig(r=4, lora_alpha=4, lora_dropout=0.0,
                                             target_modules=[str(index) for index in range(LAYERS)]))
    if fused:
        enable_fused_lora(model)
    return model


def microseconds_per_layer(model, calls: int, autocast: bool) -> float:
    x = torch.randn(8, 16, requires_grad=True)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        out.float().sum().backward()

    for _ in range(20):
        step()
    started = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - started) / calls / LAYERS * 1e6


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast, as a GPU run trains")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name, fused in (("peft", False), ("fused", True)):
        print(f"{name}: {microseconds_per_layer(build(fused), args.calls, args.autocast):.1f} us per layer "
              f"(forward and backward{', bf16 autocast' if args.autocast else ''})")


if __name__ == "__main__":
    main()
