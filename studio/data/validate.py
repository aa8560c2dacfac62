"""One entry point for checking a dataset, shared by the CLI and the Data tab: check, fix, export."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from studio.config import DATASETS_DIR, DEFAULT_LENGTH_MODEL, DEFAULT_MAX_LENGTH
from studio.data.checks import FIXES, LENGTH_FIXES, FixResult, Report, RowChecker, apply_fixes, check_dataset
from studio.data.export import DEFAULT_EXPORT_STYLE, write_jsonl
from studio.data.records import load_dataset

# The fixes a user picks by name; rows with errors are never exported, so `drop_errors` is always applied.
USER_FIXES = tuple(name for name in FIXES if name != "drop_errors")


def validate(
    source: str,
    *,
    model: str | None = DEFAULT_LENGTH_MODEL,
    max_length: int = DEFAULT_MAX_LENGTH,
    lengths: bool = True,
    overrides: dict[str, str] | None = None,
    progress: Callable[[float, str], None] | None = None,
    prepare: bool = True,
) -> Report:
    """Load, map and check a dataset; with `lengths`, measure tokens with `model`'s tokenizer, and (`prepare`)
    keep the ids in the prepared-tokens cache (studio.data.prepared) so that training on this file with this
    model's tokenizer does not tokenize it again.

    Raises DatasetUnreadable (the input cannot be read), ModelNotFound (no tokenizer), or ValueError
    (a bad mapping override or max_length), each with a message for the user.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {max_length}")
    if progress:
        progress(0.0, "Reading the file")
    # The rows are checked as they are read, a block at a time; what stays is the issues and a few numbers a row.
    checker = RowChecker(progress)
    dataset = load_dataset(source, overrides=overrides, on_records=checker)
    measuring = _measuring_tokenizer(model) if lengths else None
    keep = None
    if measuring is not None and prepare:
        from studio.data.prepared import writer_for

        keep = writer_for(source, overrides, measuring[0], dataset)
    try:
        report = check_dataset(dataset, tokenizer=measuring and measuring[0], max_length=max_length,
                               progress=progress, keep=keep, checked=checker)
    except BaseException:
        if keep is not None:
            keep.abandon()
        raise
    if keep is not None:
        try:
            keep.finish(report, {"source": Path(source).name})
            report.prepared = True
        except OSError:  # a full disk costs the cache, never the check: training then tokenizes itself
            keep.abandon()
    elif measuring is not None and prepare:
        from studio.data.prepared import open_set, source_key

        key = source_key(source, overrides, measuring[0])
        report.prepared = key is not None and open_set(key) is not None
    _label_lengths(report, measuring)
    report.length_model = model if lengths else None
    return report


def training_max_length(model: str | None, method: str = "lora") -> int:
    """The max_length a run of `model` trains at with the preset the Train tab picks for it (default_config): the
    demo preset's 512 for the demo model, the R1-Distill presets' 4096 for a real base. The Data tab checks at
    it, so that the rows it calls cut are the rows training cuts."""
    from studio.train.job import default_config

    return default_config(data="", output="", model=(model or "").strip() or None, method=method).max_length


def _measuring_tokenizer(model: str | None):
    from studio.data.tokenizer import length_tokenizer

    return length_tokenizer(model)


def _label_lengths(report: Report, measuring) -> None:
    if report.lengths is not None and measuring is not None:
        _, report.lengths.tokenizer, report.lengths.exact = measuring


def clean(report: Report, fixes: set[str] | list[str], *, max_length: int | None = None) -> FixResult:
    """The named fixes, plus leaving out every row that still has an error; lengths measured as the report was."""
    fixes = set(fixes)
    unknown = fixes - set(FIXES)
    if unknown:
        raise ValueError(f"unknown fix(es) {', '.join(sorted(unknown))}; choose from {', '.join(USER_FIXES)}")
    model = report.length_model
    needing = sorted(fixes & set(LENGTH_FIXES))
    if needing and report.lengths is None:
        raise ValueError(f"the {' and '.join(needing)} fix{'es need' if len(needing) > 1 else ' needs'} token lengths: "
                         "check with lengths on (leave out --no-lengths)")
    measuring = _measuring_tokenizer(model) if report.lengths is not None else None
    max_length = max_length or (report.lengths.max_length if report.lengths else DEFAULT_MAX_LENGTH)
    result = apply_fixes(report, fixes | {"drop_errors"}, tokenizer=measuring and measuring[0], max_length=max_length)
    _label_lengths(result.report, measuring)
    result.report.length_model = model
    return result


def write_export(result: FixResult, path: str | Path, style: str = DEFAULT_EXPORT_STYLE, *,
                 source: str | None = None) -> int:
    """Write the cleaned rows to `path` (never the input file itself) atomically; returns the rows written."""
    path = Path(path).expanduser()
    if source and Path(source).expanduser().exists() and path.exists() and path.resolve() == Path(source).expanduser().resolve():
        raise ValueError(f"{path} is the input file: export to another file so the original is kept")
    if path.is_dir():
        raise ValueError(f"{path} is a folder: give the export a file name, e.g. {path / 'clean.jsonl'}")
    if not path.parent.exists():
        raise ValueError(f"{path.parent} does not exist: create the folder or export somewhere else")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            write_jsonl(result.dataset, out, style=style)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return len(result.dataset.records)


def mapping_text(overrides: dict[str, str] | None) -> str:
    """A mapping as one line a person can read and edit: `prompt=Question, answer=Response`."""
    return ", ".join(f"{key}={value}" for key, value in (overrides or {}).items() if value)


def parse_mapping_text(text: str | None) -> dict[str, str]:
    """The inverse of mapping_text; a piece without `=` is a ValueError that names it."""
    overrides = {}
    for piece in (text or "").split(","):
        piece = piece.strip()
        if not piece:
            continue
        key, sep, value = piece.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"field mapping: {piece!r} is not KEY=NAME (e.g. prompt=question)")
        overrides[key.strip()] = value.strip()
    return overrides


def fixes_possible(report: Report, fixes: set[str] | list[str]) -> tuple[set[str], list[str]]:
    """The chosen fixes this report allows, and those it does not: without measured lengths no row is known to
    be over max_length, so the fixes that drop such rows have nothing to go on."""
    fixes = set(fixes)
    skipped = [] if report.lengths is not None else [name for name in LENGTH_FIXES if name in fixes]
    return fixes - set(skipped), skipped


# A cleaned set's file name: <source stem>-clean-<YYYYmmdd-HHMMSS>.jsonl (fix_and_save).
CLEANED_MARK = "-clean-"


def cleaned_sets(folder: Path | None = None) -> list[Path]:
    """The cleaned sets fix_and_save wrote into `folder` (the studio's datasets folder), newest first: what a
    reloaded page offers the Train tab."""
    folder = Path(folder or DATASETS_DIR)
    try:
        found = [(path.stat().st_mtime_ns, path) for path in folder.glob(f"*{CLEANED_MARK}*.jsonl") if path.is_file()]
    except OSError:  # no folder yet, or one that cannot be read: nothing cleaned to offer
        return []
    return [path for _, path in sorted(found, key=lambda item: (item[0], item[1].name), reverse=True)]


def fix_and_save(report: Report, fixes: set[str], *, style: str = DEFAULT_EXPORT_STYLE, max_length: int | None = None,
                 folder: Path | None = None) -> tuple[FixResult, Path]:
    """Apply fixes, then write the cleaned set as JSONL next to the studio's other datasets."""
    result = clean(report, fixes, max_length=max_length)
    folder = Path(folder or DATASETS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(report.dataset.source).stem.replace(":", "-").replace("/", "-") or "dataset"
    path = folder / f"{stem}{CLEANED_MARK}{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    write_export(result, path, style)
    return result, path
