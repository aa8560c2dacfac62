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
# Prepared training tokens (studio.data.prepared) kept at most this many bytes, the least recently used going first.
PREPARED_CACHE_MAX_BYTES = int(float(os.environ.get("STUDIO_PREPARED_CACHE_GB", "20")) * (1 << 30))
# On a shared server (a Space, STUDIO_MULTIUSER=1) each browser session's cleaned sets and exports go to a folder of
# its own in here, named by secrets.token_urlsafe (studio.spaces.Visitors); never served as a folder.
VISITORS_DIR = STUDIO_HOME / "visitors"
VISITORS_TEMP_NAME = "r1-lora-studio-visitors"  # under the system temp folder when STUDIO_HOME is not (see spaces)

# What the studio keeps per browser session, and for how long (studio.spaces reads the STUDIO_* variables).
DEFAULT_SESSION_TTL_S = 3600  # STUDIO_SESSION_TTL_S: a session idle this long lets its Data-tab report go
DEFAULT_MAX_REPORTS = 4  # STUDIO_MAX_REPORTS: Data-tab reports held in memory at once, all sessions together
DEFAULT_FILE_TTL_S = 86400  # STUDIO_FILE_TTL_S: uploads, downloads and session folders deleted past this age
DEFAULT_SHARED_FILE_TTL_S = 7200  # ... its default on a shared server
SESSION_CAPACITY = 64  # Gradio keeps each session's page (its components' values, ~3 MB) for this many sessions
# Failed logins (STUDIO_AUTH): each one from a client doubles the wait before its next try, up to the cap.
LOGIN_DELAY_S = 1.0
LOGIN_MAX_DELAY_S = 30.0
LOGIN_MAX_WAITING = 4  # tries from one client waiting their turn; more are refused unchecked
HUB_PROBE_S = 3.0  # how long a page waits to hear whether the Hub has a model before saying it cannot be reached

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

# What one dataset may cost to read (studio.data.readers), so that no file, however small on disk, can take the
# server down. A row over MAX_ROW_CHARS is the error `row_too_large`: it is never built into Python objects nor
# tokenized. 1M characters is far beyond anything trainable: even at 8 characters a token (long English words;
# R1 text averages 3-4, Chinese about 1.5, digits 1) it is 125k tokens, the whole 131,072-token context of the
# R1-Distill models, and 30x the default max_length.
MAX_ROW_CHARS = 1_000_000
# The most bytes MAX_ROW_CHARS characters can take serialized: 12 for a character outside the BMP written as a JSON
# escape pair (\ud83d\ude00). A line or record over this is `row_too_large` from its byte length alone, unparsed.
MAX_ROW_BYTES = 12 * MAX_ROW_CHARS
# A dataset is read up to these totals and the report says the rest was not read. 250M characters is 2.5x the
# Space's 100 MB upload (a JSON or CSV file of 100 MB holds at most 100M characters; only compressed Parquet
# expands past it) and about 60-150M tokens, days of LoRA training on one GPU; held as Python text it is
# 250 MB-1 GB. A million rows keeps a file of tiny rows (each row, its record and its issues cost about 1 KB
# whatever its text) under about 1 GB. Both can be raised for a machine with more memory.
MAX_DATASET_CHARS = int(os.environ.get("STUDIO_MAX_DATASET_CHARS", 250_000_000))
MAX_DATASET_ROWS = int(os.environ.get("STUDIO_MAX_DATASET_ROWS", 1_000_000))
# Training reads further on the studio's own machine (studio.data.prepared: the rows are held only until they are
# tokenized into the prepared set); on a shared server it keeps the limits above.
MAX_TRAIN_DATASET_CHARS = int(os.environ.get("STUDIO_MAX_TRAIN_CHARS", 4_000_000_000))
MAX_TRAIN_DATASET_ROWS = int(os.environ.get("STUDIO_MAX_TRAIN_ROWS", 10_000_000))
# Token lengths are measured in batches of at most this many characters: the ids come back as Python ints, about
# 130 bytes a token for the call, so a batch costs at most ~130 MB (at the worst, one character a token).
LENGTH_BATCH_CHARS = 1_000_000
# A Hub dataset id gets this long to answer a first request; no answer means no network (DNS is not covered by
# huggingface_hub's own timeouts, so the probe runs in a thread and is waited for this long at most).
HUB_DATASET_PROBE_S = 2.5

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
