"""Hub datasets: `owner/name` or `owner/name:split`, through `datasets`.

A Hub id is first asked of the Hub in a thread bounded to HUB_DATASET_PROBE_S, so with no network it fails in
seconds (huggingface_hub's own timeouts do not cover DNS, and `datasets` retries).

Part of studio.data.readers (see its docstring for the limits every reader keeps)."""

from __future__ import annotations

import os
import threading

from studio.config import HUB_DATASET_PROBE_S
from studio.data import readers
from studio.data.readers import DatasetUnreadable, _Budget, _size, _too_large
from studio.data.readers.parquet import _BATCH_ROWS, _TableRows

# The limits are read through the package (`readers.NAME`) when used, not imported by name: one setattr on
# studio.data.readers (as the tests do) then reaches every reader. _read_hub calls readers._probe_hub, not
# _probe_hub, for the same reason: a stand-in set on the package is the one called.

def _offline_message(repo_id: str, why: str) -> str:
    return (f"{repo_id}: {why}. Download the dataset where there is network and pass the file instead.")


def _probe_hub(repo_id: str) -> str | None:
    """None when the Hub answers for the dataset, else why not. Waits HUB_DATASET_PROBE_S at most: the request
    runs in a daemon thread (huggingface_hub's timeouts do not cover DNS, which can hang for tens of seconds)."""
    state: dict = {}
    done = threading.Event()

    def work():
        try:
            from huggingface_hub import HfApi
            from huggingface_hub.errors import RepositoryNotFoundError

            try:
                HfApi().dataset_info(repo_id, timeout=HUB_DATASET_PROBE_S)
            except RepositoryNotFoundError:
                state["missing"] = True
        except Exception as error:  # no network, a proxy, a server error: all mean "not reachable" here
            state["error"] = error
        finally:
            done.set()

    threading.Thread(target=work, name=f"probe-dataset-{repo_id}", daemon=True).start()
    if not done.wait(HUB_DATASET_PROBE_S):
        return _offline_message(repo_id, f"the Hugging Face Hub did not answer within {HUB_DATASET_PROBE_S:g} s "
                                         "(no network, or it is blocked)")
    if state.get("missing"):
        return (f"{repo_id}: the Hugging Face Hub has no such dataset, or it is private or gated "
                "(`huggingface-cli login` for those). Check the id.")
    error = state.get("error")
    if error is not None:
        return _offline_message(repo_id, f"the Hugging Face Hub cannot be reached ({type(error).__name__}: "
                                         f"{str(error)[:200]})")
    return None


def _read_hub(source: str):
    """`owner/name` or `owner/name:split` (default split: train), through `datasets`."""
    repo_id, _, split = source.partition(":")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise DatasetUnreadable(_offline_message(
            repo_id, "the Hugging Face Hub is switched off on this machine (HF_HUB_OFFLINE=1)"))
    problem = readers._probe_hub(repo_id)
    if problem:
        raise DatasetUnreadable(problem)
    try:
        import datasets
    except ImportError:
        raise DatasetUnreadable("Reading Hub datasets needs the `datasets` package: pip install datasets") from None
    try:
        dataset = datasets.load_dataset(repo_id, split=split or "train")
    except Exception as error:  # network, auth and not-found errors all end here
        raise DatasetUnreadable(
            f"{repo_id}: could not load it from the Hugging Face Hub ({type(error).__name__}: {error}). "
            "Check the id, the split and the network; private datasets need `huggingface-cli login`."
        ) from None
    table = getattr(getattr(dataset, "data", None), "table", None)
    if table is not None and getattr(dataset, "_indices", None) is None:
        table_rows = _TableRows("record", table.num_rows)
        for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
            if not table_rows.add(batch):
                break
            table_rows.budget.flush(table_rows.number / max(1, table.num_rows))
        return table_rows.budget.rows
    budget = _Budget("record")
    for number, row in enumerate(dataset, 1):
        size = _size(row)
        if size > readers.MAX_ROW_CHARS:
            budget.rows.append(_too_large(number, "record", f"{size:,} characters"))
            continue
        if not budget.room(1, size):
            budget.stop(number, f"{len(dataset) - number + 1:,} more records")
            break
        budget.rows.append((number, row, None))
        budget.chars += size
        if number % _BATCH_ROWS == 0:
            budget.flush(number / max(1, len(dataset)))
    return budget.rows
