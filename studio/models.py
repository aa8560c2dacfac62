"""Finding models and their tokenizers: the embedded demo model, a local folder, or a Hub id."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from studio.config import DEMO_MODEL, DEMO_MODEL_DIR


class ModelNotFound(Exception):
    """A model name that is neither `demo`, a model folder, nor a reachable Hub id."""


def resolve_model(name: str | None) -> str:
    """Map a model name to what `from_pretrained` takes: a folder path or a Hub id."""
    name = (name or DEMO_MODEL).strip()
    if name == DEMO_MODEL:
        if not (DEMO_MODEL_DIR / "config.json").exists():
            raise ModelNotFound(
                f"The demo model is missing from {DEMO_MODEL_DIR}. Rebuild it with "
                "`python -m studio.demo.build`."
            )
        return str(DEMO_MODEL_DIR)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not (path / "tokenizer_config.json").exists():
            raise ModelNotFound(
                f"{path} is a folder but holds no config.json or tokenizer_config.json: point to the "
                "folder that `save_pretrained` wrote."
            )
        return str(path)
    if name.count("/") != 1 or name.startswith(("/", ".", "~")):
        raise ModelNotFound(
            f"{name!r} is not `demo`, an existing folder, or a Hub id like "
            "`deepseek-ai/DeepSeek-R1-Distill-Qwen-7B`."
        )
    return name


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str | None = None):
    """The tokenizer of a model, cached. A Hub id that is not cached locally fails with a clear message."""
    from transformers import AutoTokenizer

    target = resolve_model(name)
    try:
        # Try the local cache first so an offline machine never waits on the network.
        return AutoTokenizer.from_pretrained(target, local_files_only=True)
    except OSError:
        if Path(target).exists() or hub_offline():
            raise ModelNotFound(
                f"No tokenizer for {name!r} on this machine"
                + (" and the Hub is switched off (HF_HUB_OFFLINE)" if hub_offline() else "")
                + ". Download the model on a connected machine (`huggingface-cli download "
                f"{name}`) or pass a local folder."
            ) from None
    try:
        return AutoTokenizer.from_pretrained(target)
    except Exception as error:  # network errors come in many types; all mean the same to the user
        raise ModelNotFound(
            f"Could not fetch the tokenizer of {name!r} from the Hugging Face Hub ({type(error).__name__}: "
            f"{error}). Check the id and the network, or pass a local model folder."
        ) from None
