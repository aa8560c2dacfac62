"""Getting a fine-tune out: adapter zip, merged model, push to the Hub, and a shareable HTML report.

What leaves the machine names no place on it: the adapter's `base_model_name_or_path` (PEFT writes the local
folder the base was loaded from) becomes the base's Hub id, or `demo`; every JSON file is cleaned of local
paths, and each export is checked for them before it is written out or pushed.
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from studio.chat import math_text
from studio.chat import view as chatview
from studio.chat.generate import resolve_adapter
from studio.chat.model_card import (
    base_model_id, data_summary, is_local_path, loss_summary, model_card, settings_in_words,
)
from studio.config import PROJECT_ROOT, STUDIO_HOME
from studio.runs import RunFolder, run_of_adapter

QLORA_MERGE_NOTE = (
    "This run trained on 4-bit (NF4) weights. Merging a LoRA into 4-bit weights would round the update "
    "away, so the adapter is merged into the bf16 base instead: the result is a full-precision model that "
    "answers like base + adapter (up to the small gap between the 4-bit weights it trained on and bf16).")


ADAPTER_SUFFIXES = (".json", ".safetensors", ".jinja", ".md", ".txt", ".model")
TEXT_SUFFIXES = (".json", ".md", ".txt", ".jinja")
# A tokenizer's vocabulary holds strings like "/root" or "/ home" as tokens: data, never a path, left untouched.
VOCABULARY_FILES = ("tokenizer.json", "vocab.json", "merges.txt")
# JSON fields that name the model a file belongs to: a local path there becomes the base's shareable name.
MODEL_NAME_KEYS = ("base_model_name_or_path", "_name_or_path", "name_or_path")


def _local_roots(*extra: str | Path) -> list[str]:
    """Folders of this machine that exports are checked for: its home, the studio's, the temp folder, and the
    export's own sources; the longest first."""
    roots = {str(Path.home()), str(PROJECT_ROOT), str(STUDIO_HOME), tempfile.gettempdir(),
             *(str(root) for root in extra if is_local_path(str(root)))}  # a Hub id is a name, not a folder
    return sorted((root.rstrip("/\\") for root in roots if root and len(root) > 1), key=len, reverse=True)


def _under_a_root(value: str, roots: list[str]) -> bool:
    return any(value == root or value.startswith((root + "/", root + "\\")) for root in roots)


def _clean_json_value(value, base: str, roots: list[str], key: str | None = None):
    if isinstance(value, dict):
        return {k: _clean_json_value(v, base, roots, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json_value(v, base, roots) for v in value]
    if isinstance(value, str) and is_local_path(value):
        if key in MODEL_NAME_KEYS:
            return base
        if _under_a_root(value, roots):
            return Path(value).name
    return value


def clean_json_file(source: Path, target: Path, base: str, *extra_roots: str | Path) -> None:
    """Copy a JSON file with local paths in it replaced: the model's by `base`, any other of this machine's
    folders by its file name. Vocabulary files are copied as they are."""
    if source.name.lower() in VOCABULARY_FILES:
        if source != target:
            shutil.copyfile(source, target)
        return
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):  # not JSON after all: copied, and the leak check reads it
        if source != target:
            shutil.copyfile(source, target)
        return
    cleaned = _clean_json_value(data, base, _local_roots(*extra_roots))
    target.write_text(json.dumps(cleaned, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def local_paths_in(folder: Path, *extra_roots: str | Path) -> list[str]:
    """`file: path` for each place of this machine named in an export's text files (empty: none)."""
    roots = _local_roots(*extra_roots)
    found = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES or path.name.lower() in VOCABULARY_FILES:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        leak = next((root for root in roots if root + "/" in text or root + "\\" in text
                     or f'"{root}"' in text), None)
        if leak is None and path.suffix.lower() == ".json":
            try:
                leak = next((value for key, value in _named_models(json.loads(text)) if is_local_path(value)), None)
            except ValueError:
                pass
        if leak is not None:
            found.append(f"{path.name}: {leak}")
    return found


def _named_models(value):
    """(key, value) of every MODEL_NAME_KEYS field in a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in MODEL_NAME_KEYS and isinstance(item, str):
                yield key, item
            else:
                yield from _named_models(item)
    elif isinstance(value, list):
        for item in value:
            yield from _named_models(item)


def refuse_local_paths(folder: Path, what: str, *extra_roots: str | Path) -> None:
    leaks = local_paths_in(folder, *extra_roots)
    if leaks:
        raise ValueError(f"The {what} would name folders of this machine ({'; '.join(leaks[:3])}), so it is not "
                         "shared. Remove those paths from the files named, or report this to the studio's "
                         "maintainers.")


def shareable_adapter(run_or_adapter: str | Path, out_dir: str | Path) -> Path:
    """The adapter as it is shared (zipped or pushed): its files, JSON cleaned of local paths, PEFT's blank
    README replaced by a model card. Written to `out_dir/<run>-adapter/`, made anew each time."""
    adapter = resolve_adapter(run_or_adapter)
    run = run_of_adapter(adapter)
    config = run_config_for(adapter)
    model = config.get("model")
    if not model:
        try:
            model = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get(
                "base_model_name_or_path")
        except (OSError, ValueError):
            model = None
    base = base_model_id(model)
    target = Path(out_dir) / f"{run.name}-adapter"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in sorted(adapter.iterdir()):
        # Files of the adapter only: links are not followed out of the folder; suffixes in any case.
        if not path.is_file() or path.is_symlink() or path.suffix.lower() not in ADAPTER_SUFFIXES:
            continue
        if path.name.lower() == "readme.md":  # PEFT's template ("[More Information Needed]"): the card replaces it
            continue
        if path.suffix.lower() == ".json":
            clean_json_file(path, target / path.name, base, adapter, run)
        else:
            shutil.copyfile(path, target / path.name)
    status = RunFolder(run).read_status() if (run / "status.json").exists() else {}
    metrics = RunFolder(run).read_metrics() if (run / "metrics.jsonl").exists() else []
    if adapter.name.startswith("checkpoint-") and adapter.name[len("checkpoint-"):].isdigit():
        saved_at = int(adapter.name[len("checkpoint-"):])  # a checkpoint's card: the loss up to its own step
        metrics = [row for row in metrics if row.get("step", 0) <= saved_at]
    (target / "README.md").write_text(model_card(name=f"{run.name}-adapter", config=config, status=status,
                                                 metrics=metrics), encoding="utf-8")
    refuse_local_paths(target, "adapter", adapter, run)
    return target


def adapter_zip(run_or_adapter: str | Path, out_dir: str | Path) -> Path:
    """The shareable adapter as one zip: adapter_config.json, adapter_model.safetensors, tokenizer files and its
    model card (README.md), under one folder named after the run."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as staging:
        folder = shareable_adapter(run_or_adapter, staging)
        target = out_dir / f"{folder.name}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.iterdir()):
                archive.write(path, f"{folder.name}/{path.name}")
    return target


def run_config_for(adapter: Path) -> dict:
    for folder in (adapter, adapter.parent):
        path = folder / "config.json"
        if path.exists() and (folder / "status.json").exists():
            return json.loads(path.read_text(encoding="utf-8"))
    return {}


def merge_adapter(run_or_adapter: str | Path, out_dir: str | Path, model: str | None = None) -> tuple[Path, str]:
    """Merge the adapter into its bf16 (fp32 on CPU) base and save as safetensors. Returns (folder, note)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from studio.models import detect_device, load_tokenizer, resolve_model

    adapter = resolve_adapter(run_or_adapter)
    config = run_config_for(adapter)
    model = model or config.get("model") or "demo"
    note = QLORA_MERGE_NOTE if config.get("method") == "qlora" else "Merged into the base weights."
    device = detect_device()
    dtype = torch.bfloat16 if device.kind == "cuda" and device.bf16 else torch.float32
    base = AutoModelForCausalLM.from_pretrained(resolve_model(model), dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    out_dir = Path(out_dir)
    merged.save_pretrained(out_dir, safe_serialization=True)
    load_tokenizer(model).save_pretrained(out_dir)
    base_name = base_model_id(model)
    for path in out_dir.glob("*.json"):  # transformers records the folders it loaded from
        clean_json_file(path, path, base_name, adapter, resolve_model(model))
    refuse_local_paths(out_dir, "merged model", adapter, resolve_model(model))
    return out_dir, note


def push_to_hub(folder: str | Path, repo_id: str, token: str, private: bool = True) -> str:
    """Upload a folder (adapter or merged model). The token is used for this call only, never stored."""
    from studio.models import hub_offline

    if not token or not token.strip():
        raise ValueError("Paste a Hugging Face token with write access to push.")
    if "/" not in repo_id:
        raise ValueError(f"{repo_id!r} is not a repository id; use owner/name.")
    refuse_local_paths(Path(folder), "upload")  # said before any network: nothing of this machine is sent
    if hub_offline():
        raise ValueError("The Hugging Face Hub is switched off on this machine (HF_HUB_OFFLINE=1); "
                         "download the zip and upload it from a connected machine.")
    from huggingface_hub import HfApi

    api = HfApi(token=token.strip())
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id)
    except Exception as error:  # network and auth errors: say which without echoing the token
        message = str(error).replace(token.strip(), "***")
        raise ValueError(f"Could not push to {repo_id}: {type(error).__name__}: {message}") from None
    return f"https://huggingface.co/{repo_id}"


# --------------------------------------------------------------------------------------------------
# Shareable report


def _svg_curve(metrics: list[dict], width: int = 640, height: int = 220) -> str:
    """Loss (and eval loss) as an inline SVG: the report must open anywhere, offline, as one file. The right end
    is labelled with the last step's own loss; the lowest loss is marked where it was."""
    series = {key: [(row["step"], row[key]) for row in metrics if row.get(key) is not None]
              for key in ("loss", "eval_loss")}
    points = [point for values in series.values() for point in values]
    if not points:
        return "<p>No loss recorded.</p>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad = 36

    def scale(step, value):
        x = pad + (step - x0) / max(x1 - x0, 1e-9) * (width - 2 * pad)
        y = height - pad - (value - y0) / max(y1 - y0, 1e-9) * (height - 2 * pad)
        return x, y

    def at(step, value):
        x, y = scale(step, value)
        return f"{x:.1f},{y:.1f}"

    colours = {"loss": "#4f46e5", "eval_loss": "#ea580c"}
    lines = [f'<polyline fill="none" stroke="{colours[key]}" stroke-width="2" points="'
             + " ".join(at(*point) for point in values) + f'"><title>{key}</title></polyline>'
             for key, values in series.items() if values]
    marks = ""
    loss = loss_summary(metrics)
    if loss:
        x, y = scale(loss.lowest_step, loss.lowest_loss)
        marks = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#16a34a"><title>lowest loss</title></circle>'
                 f'<text x="{x:.1f}" y="{y - 8:.1f}" font-size="11" text-anchor="middle">lowest {loss.lowest_loss:.4f}'
                 f' · step {loss.lowest_step}</text>')
        end = f"step {loss.last_step} · loss {loss.last_loss:.4f}"
    else:
        end = f"step {x1}"
    return (f'<svg class="curve" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="loss curve">'
            f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>'
            f'<text x="{pad}" y="{pad - 8}" font-size="11">{y1:.3f}</text>'
            f'<text x="{pad}" y="{height - 8}" font-size="11">step {x0}</text>'
            f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">{end}</text>'
            + "".join(lines) + marks + "</svg>")


def _words(text: str) -> str:
    """Escaped text with `code` in backticks set as <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts))


def _table(headers: list[str], rows: list[list], *, math_columns: tuple[int, ...] = ()) -> str:
    """An HTML table; cells of `math_columns` with their LaTeX drawn as MathML, the rest escaped text."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)

    def cell(index, value):
        text = "" if value is None else str(value)
        return math_text.to_html(text) if index in math_columns else html.escape(text)

    body = "".join("<tr>" + "".join(f"<td>{cell(i, c)}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _compare_sections(compare: dict) -> tuple[list[str], list[str]]:
    """The report's summary of a batch compare (near the top) and its table of every prompt (at the end)."""
    summary, pattern = compare["summary"], compare.get("pattern")
    rows = [[side.upper(), f"{s['format_compliance']}%",
             "— (no references)" if s["answer_match"] is None else f"{s['answer_match']}%",
             *([f"{s['pattern']}%"] if pattern else []), s["mean_reasoning_tokens"]]
            for side, s in summary.items() if side in ("base", "lora")]
    headers = ["model", "keeps the reasoning format", "matches the reference",
               *(["shows the answer pattern"] if pattern else []), "mean reasoning tokens"]
    legend = chatview.compare_legend(pattern).replace("**", "")
    top = ["<h2>What the fine-tune changed</h2>",
           f"<p>{summary['prompts']} prompts answered by the base model and by base + LoRA.</p>",
           _table(headers, rows),
           "<ul class='legend'>" + "".join(f"<li>{_words(line[2:])}</li>" for line in legend.splitlines()) + "</ul>"]
    table_rows = [[row["prompt"], row.get("reference") or "— none", chatview.answer_shown(row["base"]),
                   chatview.answer_shown(row["lora"]),
                   chatview.format_cell(row["base"]), chatview.format_cell(row["lora"]),
                   chatview.match_cell(row["base"]), chatview.match_cell(row["lora"])]
                  for row in compare["rows"] if "base" in row and "lora" in row]
    every = ["<h2>Every prompt</h2>",
             _table(["prompt", "reference", "base answer", "LoRA answer", "base format", "LoRA format",
                     "base matches", "LoRA matches"], table_rows, math_columns=(0, 1, 2, 3, 6, 7))]
    return top, every


NO_COMPARE_NOTE = ("<p class='note'><strong>No batch compare in this report.</strong> It shows the training only. "
                   "To add what the fine-tune changed — the base model's and the LoRA's answers to the same prompts, "
                   "whether each keeps the reasoning format and matches a reference — open the Chat tab's "
                   "<em>Batch compare</em>, press <em>Run batch compare</em>, then download the report again.</p>")


def html_report(*, run_config: dict, metrics: list[dict], status: dict | None = None, compare: dict | None = None,
                title: str = "R1 LoRA Studio report") -> str:
    """One self-contained HTML file (no script, no font, no link to fetch): what the fine-tune changed, the
    training data and loss, and the run's settings in words."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>Made {time.strftime('%Y-%m-%d %H:%M')} with R1 LoRA Studio.</p>"]
    every_prompt: list[str] = []
    if compare:
        top, every_prompt = _compare_sections(compare)
        parts += top
    else:
        parts.append(NO_COMPARE_NOTE)
    data = data_summary(run_config or {}, status or {})
    if data:
        parts += ["<h2>Dataset</h2>", _table(["what", "value"], [[what, value] for what, value in data])]
    parts += ["<h2>Training loss</h2>", _svg_curve(metrics)]
    loss = loss_summary(metrics)
    if loss:
        parts.append(f"<p>{html.escape(loss.words().capitalize())} ({loss.steps} steps logged).</p>")
    settings = settings_in_words(run_config or {})
    if settings:
        parts += ["<h2>Settings</h2>", _table(["setting", "value"], [[what, value] for what, value in settings])]
    parts += every_prompt
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f2937}"
             "table{border-collapse:collapse;width:100%;margin:1em 0;font-size:14px}"
             "th,td{border:1px solid #e5e7eb;padding:6px 8px;text-align:left;vertical-align:top}"
             "th{background:#f3f4f6}.meta{color:#6b7280}.curve{background:#fafafa;border:1px solid #e5e7eb}"
             ".note{background:#fffbeb;border:1px solid #fcd34d;padding:.6em .8em;border-radius:4px}"
             ".legend{color:#4b5563;font-size:13px}" + math_text.MATH_STYLE)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
