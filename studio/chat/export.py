"""Getting a fine-tune out: adapter zip, merged model, push to the Hub, and a shareable HTML report."""

from __future__ import annotations

import html
import json
import time
import zipfile
from pathlib import Path

from studio.chat.generate import resolve_adapter
from studio.runs import run_of_adapter

QLORA_MERGE_NOTE = (
    "This run trained on 4-bit (NF4) weights. Merging a LoRA into 4-bit weights would round the update "
    "away, so the adapter is merged into the bf16 base instead: the result is a full-precision model that "
    "answers like base + adapter (up to the small gap between the 4-bit weights it trained on and bf16).")


ADAPTER_SUFFIXES = (".json", ".safetensors", ".jinja", ".md", ".txt", ".model")


def adapter_zip(run_or_adapter: str | Path, out_dir: str | Path) -> Path:
    """The adapter folder as one zip (adapter_config.json, adapter_model.safetensors, tokenizer files)."""
    adapter = resolve_adapter(run_or_adapter)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = run_of_adapter(adapter).name
    target = out_dir / f"{name}-adapter.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(adapter.iterdir()):
            # Files of the adapter only: links are not followed out of the folder; suffixes in any case.
            if path.is_file() and not path.is_symlink() and path.suffix.lower() in ADAPTER_SUFFIXES:
                archive.write(path, f"{name}-adapter/{path.name}")
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
    return out_dir, note


def push_to_hub(folder: str | Path, repo_id: str, token: str, private: bool = True) -> str:
    """Upload a folder (adapter or merged model). The token is used for this call only, never stored."""
    from studio.models import hub_offline

    if not token or not token.strip():
        raise ValueError("Paste a Hugging Face token with write access to push.")
    if "/" not in repo_id:
        raise ValueError(f"{repo_id!r} is not a repository id; use owner/name.")
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
    """Loss (and eval loss) as an inline SVG: the report must open anywhere, offline, as one file."""
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
        return f"{x:.1f},{y:.1f}"

    colours = {"loss": "#4f46e5", "eval_loss": "#ea580c"}
    lines = [f'<polyline fill="none" stroke="{colours[key]}" stroke-width="2" points="'
             + " ".join(scale(*point) for point in values) + f'"><title>{key}</title></polyline>'
             for key, values in series.items() if values]
    return (f'<svg class="curve" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="loss curve">'
            f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>'
            f'<text x="{pad}" y="{pad - 8}" font-size="11">{y1:.3f}</text>'
            f'<text x="{pad}" y="{height - 8}" font-size="11">step {x0}</text>'
            f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">step {x1} · loss {y0:.3f}</text>'
            + "".join(lines) + "</svg>")


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if c is None else str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _yes_no(value) -> str:
    return "—" if value is None else ("✔" if value else "✘")


def html_report(*, run_config: dict, metrics: list[dict], dataset_summary: dict | None = None,
                compare: dict | None = None, title: str = "R1 LoRA Studio report") -> str:
    """One self-contained HTML file: dataset summary, loss curves, run config, batch-compare table."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>Made {time.strftime('%Y-%m-%d %H:%M')} with R1 LoRA Studio.</p>"]
    if compare:
        summary = compare["summary"]
        rows = [[side.upper(), f"{s['format_compliance']}%", "—" if s["answer_match"] is None else f"{s['answer_match']}%",
                 "—" if s["pattern"] is None else f"{s['pattern']}%", s["mean_reasoning_tokens"]]
                for side, s in summary.items() if side in ("base", "lora")]
        parts += ["<h2>What the fine-tune changed</h2>",
                  f"<p>{summary['prompts']} prompts answered by the base model and by base + LoRA.</p>",
                  _table(["model", "keeps the reasoning format", "matches the reference",
                          f"answer pattern {compare.get('pattern') or ''}", "mean reasoning tokens"], rows)]
    if dataset_summary:
        parts += ["<h2>Dataset</h2>", _table(["", "value"], [[k, v] for k, v in dataset_summary.items()])]
    parts += ["<h2>Training loss</h2>", _svg_curve(metrics)]
    if run_config:
        shown = {k: v for k, v in run_config.items() if k not in ("report_to",)}
        parts += ["<h2>Run configuration</h2>", _table(["setting", "value"], [[k, v] for k, v in shown.items()])]
    if compare:
        table_rows = [[row["prompt"], row.get("reference"), row["base"]["answer"], row["lora"]["answer"],
                       _yes_no(row["base"]["well_formed"]), _yes_no(row["lora"]["well_formed"]),
                       _yes_no(row["base"]["matches_reference"]), _yes_no(row["lora"]["matches_reference"])]
                      for row in compare["rows"] if "base" in row and "lora" in row]
        parts += ["<h2>Every prompt</h2>",
                  _table(["prompt", "reference", "base answer", "LoRA answer", "base format", "LoRA format",
                          "base matches", "LoRA matches"], table_rows)]
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f2937}"
             "table{border-collapse:collapse;width:100%;margin:1em 0;font-size:14px}"
             "th,td{border:1px solid #e5e7eb;padding:6px 8px;text-align:left;vertical-align:top}"
             "th{background:#f3f4f6}.meta{color:#6b7280}.curve{background:#fafafa;border:1px solid #e5e7eb}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
