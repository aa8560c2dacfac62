"""One entry point for checking a dataset, shared by the CLI and the Data tab."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from studio.data.checks import FixResult, Report, apply_fixes, check_dataset
from studio.data.export import DEFAULT_EXPORT_STYLE, export_jsonl
from studio.config import DATASETS_DIR, DEFAULT_MAX_LENGTH, DEFAULT_MODEL
from studio.data.records import load_dataset


def validate(
    source: str,
    *,
    model: str | None = DEFAULT_MODEL,
    max_length: int = DEFAULT_MAX_LENGTH,
    lengths: bool = True,
    overrides: dict[str, str] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> Report:
    """Load, map and check a dataset; with `lengths`, measure tokens with `model`'s tokenizer.

    Raises DatasetUnreadable (the input cannot be read), ModelNotFound (no tokenizer), or ValueError
    (a bad mapping override or max_length), each with a message for the user.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {max_length}")
    if progress:
        progress(0.0, "Reading the file")
    dataset = load_dataset(source, overrides=overrides)
    tokenizer = None
    if lengths:
        from studio.models import load_tokenizer

        tokenizer = load_tokenizer(model)
    return check_dataset(dataset, tokenizer=tokenizer, max_length=max_length, progress=progress)


def fix_and_save(report: Report, fixes: set[str], *, style: str = DEFAULT_EXPORT_STYLE, model: str | None = None,
                 max_length: int = DEFAULT_MAX_LENGTH, folder: Path | None = None) -> tuple[FixResult, Path]:
    """Apply fixes, then write the cleaned set as JSONL next to the studio's other datasets."""
    tokenizer = None
    if report.lengths is not None:
        from studio.models import load_tokenizer

        tokenizer = load_tokenizer(model)
    result = apply_fixes(report, fixes, tokenizer=tokenizer, max_length=max_length)
    folder = Path(folder or DATASETS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(report.dataset.source).stem.replace(":", "-").replace("/", "-") or "dataset"
    path = folder / f"{stem}-clean-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    export_jsonl(result.dataset, path, style=style)
    return result, path
