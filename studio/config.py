"""Every default of the studio, held once.

The seed advice for R1-Distill fine-tunes lives here: long max length (reasoning runs thousands of
tokens), lr 1e-4 for LoRA and 2e-4 for QLoRA, bf16 rather than fp16, sampling temperature 0.6.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"
DEMO_MODEL_DIR = ASSETS_DIR / "demo-model"
SAMPLES_DIR = ASSETS_DIR / "samples"
# Where the studio writes: run folders and cleaned datasets. Survives restarts; set STUDIO_HOME to move it.
STUDIO_HOME = Path(os.environ.get("STUDIO_HOME", PROJECT_ROOT / "workspace")).expanduser()
RUNS_DIR = STUDIO_HOME / "runs"
DATASETS_DIR = STUDIO_HOME / "datasets"

DEMO_MODEL = "demo"
DEFAULT_MODEL = DEMO_MODEL
# The bases the studio is made for; both go through the same code path as the demo model.
KNOWN_MODELS = {
    DEMO_MODEL: "Embedded R1-style demo model (tiny Qwen2, runs on CPU)",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": "R1-Distill Qwen 7B (Qwen2 architecture)",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": "R1-Distill Llama 8B (Llama architecture)",
}

DEFAULT_MAX_LENGTH = 4096
# Whose tokenizer measures lengths in the Data tab and `validate` unless the user names the model they will train:
# the base the studio is made for, not the demo (whose toy vocabulary counts 1.6-3.1x the tokens). Offline its
# vocabulary is built from a package (studio.data.tokenizer).
DEFAULT_LENGTH_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"

# Sampling, as DeepSeek recommends for R1 models.
DEFAULT_TEMPERATURE = 0.6
DEFAULT_TOP_P = 0.95

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
# Reasoning delimiters other tools emit that the studio can convert to <think>…</think> (opening, closing).
# In a reply with <think> reasoning, any of them left after </think> is an error (`tag_in_answer`).
FOREIGN_THINK_TAGS = (
    ("<|begin_of_thought|>", "<|end_of_thought|>"),  # Sky-T1, Bespoke-Stratos, OpenThoughts
    ("<thinking>", "</thinking>"),  # prompted models, many community fine-tunes
    ("<reasoning>", "</reasoning>"),  # GRPO recipes, reasoning fine-tunes
    ("<thought>", "</thought>"),  # EXAONE Deep
    ("◁think▷", "◁/think▷"),  # Kimi (the triangles are not ASCII brackets)
    ("<seed:think>", "</seed:think>"),  # ByteDance Seed-OSS
    ("[THINK]", "[/THINK]"),  # Mistral Magistral
    ("<|START_THINKING|>", "<|END_THINKING|>"),  # Cohere Command A / R7B
    ("<start_working_out>", "<end_working_out>"),  # Unsloth GRPO notebooks
)
# Markers some sets wrap the final answer in (opening, closing): R1 answers carry none. The 'convert foreign
# tags' fix removes them from the answer and keeps what they wrap; one left in the answer is `tag_in_answer`.
SOLUTION_MARKERS = (
    ("<|begin_of_solution|>", "<|end_of_solution|>"),  # Sky-T1, Bespoke-Stratos, OpenThoughts
    ("<|START_RESPONSE|>", "<|END_RESPONSE|>"),  # Cohere Command A / R7B
)

SAMPLE_DATASETS = {
    "demo-train.jsonl": "Demo fine-tuning set: teaches the demo model to box its final answer",
    "clean-sample.jsonl": "A clean R1 dataset (no errors)",
    "broken-sample.jsonl": "A broken dataset that trips every check",
}


def on_space() -> bool:
    """Running as a Hugging Face Space (public visitors: no local paths, limits shown)."""
    return bool(os.environ.get("SPACE_ID"))
