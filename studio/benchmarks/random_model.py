"""Build an R1-Distill architecture with random weights, for speed and memory checks without a download.

    python -m studio.benchmarks.random_model OUT_DIR [--arch qwen2-7b|llama-8b] [--device cuda|cpu]

Speed and memory do not depend on the weights' values, so a random-weight model measures what the real
one would. The folder gets the demo model's tokenizer (R1 special tokens and chat template): its ids
are a subset of the real vocabulary, so synthetic text trains exactly like real text of the same length.
"""

from __future__ import annotations

import argparse
import time

# DeepSeek-R1-Distill-Qwen-7B (Qwen2) and -Llama-8B (Llama 3.1 8B) shapes, from their published configs.
ARCHITECTURES = {
    "qwen2-7b": ("Qwen2Config", dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                     num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                                     max_position_embeddings=131072, rope_theta=10000.0, rms_norm_eps=1e-6,
                                     tie_word_embeddings=False, hidden_act="silu", use_sliding_window=False)),
    "llama-8b": ("LlamaConfig", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                     num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                                     max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
                                     tie_word_embeddings=False, hidden_act="silu")),
}


def build(out_dir: str, arch: str = "qwen2-7b", device: str = "cuda") -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from studio.models import load_tokenizer

    config_class, shape = ARCHITECTURES[arch]
    tokenizer = load_tokenizer("demo")
    config = getattr(transformers, config_class)(**shape, bos_token_id=tokenizer.bos_token_id,
                                                  eos_token_id=tokenizer.eos_token_id,
                                                  pad_token_id=tokenizer.pad_token_id)
    start = time.time()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters()) / 1e9
    print(f"{arch}: {params:.2f}B random parameters written to {out_dir} in {time.time() - start:.0f}s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--arch", choices=list(ARCHITECTURES), default="qwen2-7b")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    build(args.out_dir, args.arch, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
