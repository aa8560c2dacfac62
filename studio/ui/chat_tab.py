"""Chat tab: base and base + LoRA side by side, batch compare, export, and the shareable report."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import spaces
from studio.chat import view as chatview
from studio.chat.compare import DEMO_PATTERN, read_prompts, run_compare
from studio.chat.export import (
    adapter_zip, html_report, merge_adapter, push_to_hub, run_config_for, shareable_adapter,
)
from studio.chat.math_text import LATEX_DELIMITERS
from studio.chat.scoring import describe_pattern
from studio.chat.generate import (
    BASE, GPU_MAX_NEW_TOKENS, LORA, SamplingSettings, default_max_new_tokens, resolve_adapter,
)
from studio.config import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, DEMO_MODEL, SAMPLES_DIR, STUDIO_HOME
from studio.models import check_model_available, typed_name
from studio.runs import RunFolder, run_of_adapter
from studio.ui.layout import core_progress, intro, number, session_of, user_errors
from studio.workspace import workspace

HELD_OUT = SAMPLES_DIR / "demo-heldout.jsonl"
EXPORTS = "exports"
REASONING_TAGS = [("<think>", "</think>")]
EMPTY_STATE = ("**No fine-tune yet.** Train a run first in the **2. Train** tab (the demo takes under a minute on a CPU), "
               "then come back: it appears in the list below. You can also type the folder of an adapter you have.")


def held_out_examples(limit: int = 8) -> list[str]:
    try:
        return [prompt.text for prompt in read_prompts(HELD_OUT)[:limit]]
    except ValueError:
        return []


def owner_of(request: gr.Request | None) -> str | None:
    """Whose runs this call may use: its session's owner token on a shared server, None (every run) locally."""
    return spaces.run_owner(session_of(request)) if spaces.multiuser() else None


@user_errors
def adapter_choices(current=None, request: gr.Request = None):
    """The runs to pick from, by name (the session's own on a shared server; the newest picked when none is), and
    the empty state when there are none."""
    owner = owner_of(request)
    choices = workspace().adapters() if owner is None else workspace().adapters(owner)  # None: every run
    value = current or (choices[0][1] if choices else None)
    return gr.update(choices=choices, value=value), gr.update(visible=not choices)


def chosen_adapter(adapter: str, request: gr.Request | None = None) -> str:
    """The adapter box's value as a folder to read: a run's name from the list (resolved here, on the server: one of
    the session's own runs on a shared server) or a typed folder (never one with a `..` step)."""
    return workspace().adapter_source(typed_name(adapter, "adapter"), owner_of(request))


def chosen_model(adapter: str, model: str) -> str:
    """The base model box's value, else the model the run of `adapter` (a folder, chosen_adapter's) trained on."""
    model = typed_name(model)
    if model:
        return model
    return run_config_for(resolve_adapter(adapter)).get("model") or DEMO_MODEL


def settings_from(max_new_tokens, temperature, top_p, seed, greedy) -> SamplingSettings:
    return SamplingSettings(max_new_tokens=number(max_new_tokens, "Max new tokens"),
                            temperature=0.0 if greedy else number(temperature, "Temperature", float),
                            top_p=number(top_p, "top_p", float), seed=None if seed is None or seed < 0 else int(seed))


def ensure_loaded(adapter: str, model: str, request: gr.Request | None = None) -> None:
    adapter = chosen_adapter(adapter, request)
    if not adapter:
        raise gr.Error("Pick a run (or type an adapter folder) for the LoRA side first.")
    busy = workspace().training_busy(owner_of(request))
    if busy:
        raise gr.Error(busy)
    model = chosen_model(adapter, model)
    check_model_available(model)  # not downloaded and no network: say so within seconds
    workspace().chat.load(model, adapter)


@user_errors
@spaces.gpu(duration=spaces.CHAT_GPU_SECONDS)
def send(prompt, base_history, lora_history, adapter, model, max_new_tokens, temperature, top_p, seed, greedy,
         request: gr.Request = None, progress=gr.Progress()):
    prompt = (prompt or "").strip()
    if not prompt:
        raise gr.Error("Type a question first.")
    progress(0.1, desc="Loading the model and the adapter")
    ensure_loaded(adapter, model, request)
    conversations = {BASE: chatview.conversation_from_history(base_history, prompt),
                     LORA: chatview.conversation_from_history(lora_history, prompt)}
    base_history = list(base_history or []) + [{"role": "user", "content": prompt}]
    lora_history = list(lora_history or []) + [{"role": "user", "content": prompt}]
    settings = settings_from(max_new_tokens, temperature, top_p, seed, greedy)
    for replies in workspace().chat.stream(conversations, settings):
        yield ("", base_history + [{"role": "assistant", "content": chatview.pane_text(replies[BASE])}],
               lora_history + [{"role": "assistant", "content": chatview.pane_text(replies[LORA])}],
               chatview.pane_stats(replies[BASE]), chatview.pane_stats(replies[LORA]))


@user_errors
def stop_generation():
    workspace().chat.stop()


@user_errors
@spaces.gpu(duration=spaces.CHAT_GPU_SECONDS)
def batch_compare(adapter, model, prompts_file, pattern, max_new_tokens, temperature, top_p, seed, greedy,
                  request: gr.Request = None, progress=gr.Progress()):
    progress(0.0, desc="Loading the model and the adapter")
    ensure_loaded(adapter, model, request)
    prompts = read_prompts(prompts_file or HELD_OUT)
    settings = settings_from(max_new_tokens, temperature, top_p, seed, greedy)
    result = run_compare(workspace().chat, prompts, settings, pattern=(pattern or "").strip() or None,
                         progress=core_progress(progress)).to_json()
    return result, chatview.compare_summary_markdown(result), chatview.compare_frame(result)


@user_errors
def pattern_in_words(pattern) -> str:
    """What the answer pattern box counts, said under it as the user types (a bad pattern: what is wrong)."""
    try:
        return f"Counts: {describe_pattern((pattern or '').strip() or None)}."
    except ValueError as error:
        return f"⚠ {error}"


@user_errors
def forget_compare():
    """Another run picked: its report starts without the last run's batch compare, and the table is cleared."""
    return None, "", None, report_note(None)


def report_note(compare_result) -> str:
    """Beside the report's download: whether it will hold a batch compare."""
    if not compare_result:
        return chatview.NO_COMPARE_YET
    return (f"The report holds the batch compare of {compare_result['summary']['prompts']} prompts, the loss "
            "curve and the run's settings.")


def exports_dir(request: gr.Request | None = None) -> Path:
    """Where exports go: STUDIO_HOME/exports, or on a shared server the session's own folder (handed out only
    through the download, under a name nobody else can guess)."""
    if spaces.multiuser():
        folder = spaces.visitors().folder(session_of(request)) / EXPORTS
    else:
        folder = STUDIO_HOME / EXPORTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def picked_adapter(adapter, request: gr.Request | None = None) -> str:
    adapter = chosen_adapter(adapter, request)
    if not adapter:
        raise gr.Error("Pick a run first.")
    return adapter


def not_ready():
    """A download with nothing to download yet (no run picked): shown, but it cannot be pressed."""
    return gr.DownloadButton(value=None, interactive=False)


@user_errors
def download_zip(adapter, request: gr.Request):
    """The adapter zip, made when a run is picked so that one click on the button downloads it."""
    if not typed_name(adapter, "adapter"):
        return not_ready()
    adapter = picked_adapter(adapter, request)
    return gr.DownloadButton(value=str(adapter_zip(adapter, exports_dir(request))), interactive=True)


@user_errors
@spaces.gpu(duration=spaces.CHAT_GPU_SECONDS)
def merge(adapter, model, request: gr.Request, progress=gr.Progress()):
    adapter = picked_adapter(adapter, request)
    progress(0.1, desc="Merging the adapter into the base weights")
    name = run_of_adapter(resolve_adapter(adapter)).name
    folder, note = merge_adapter(adapter, exports_dir(request) / f"{name}-merged", model=typed_name(model) or None)
    shown = folder.name if spaces.multiuser() else folder  # no server paths on a shared server
    return f"Merged model saved in `{shown}` (safetensors). {note}"


@user_errors
def push(adapter, repo_id, token, what, request: gr.Request, progress=gr.Progress()):
    adapter = picked_adapter(adapter, request)
    progress(0.1, desc="Uploading to the Hub")
    if what == "merged model":
        folder = exports_dir(request) / f"{run_of_adapter(resolve_adapter(adapter)).name}-merged"
        if not folder.exists():
            raise gr.Error("Merge the adapter first (the button above), then push the merged model.")
    else:  # what the zip holds: no local paths, a model card
        folder = shareable_adapter(adapter, exports_dir(request) / "to-push")
    url = push_to_hub(folder, (repo_id or "").strip(), token or "")
    return f"Pushed to {url}"


@user_errors
def report(adapter, compare_result, request: gr.Request):
    """The shareable report, made when a run is picked and again after a batch compare, so that one click on the
    button downloads it (the data file by its name only: the page is meant to be sent)."""
    if not typed_name(adapter, "adapter"):
        return not_ready()
    adapter_path = resolve_adapter(picked_adapter(adapter, request))
    run_folder = RunFolder(run_of_adapter(adapter_path))
    page = html_report(run_config=run_config_for(adapter_path), metrics=run_folder.read_metrics(),
                       status=run_folder.read_status(), compare=compare_result,
                       title=f"Fine-tune report: {run_folder.name}")
    path = exports_dir(request) / f"{run_folder.name}-report.html"
    path.write_text(page, encoding="utf-8")
    return gr.DownloadButton(value=str(path), interactive=True)


@user_errors
def report_after_compare(adapter, compare_result, request: gr.Request):
    """The report made again with the batch compare just run, and the note saying so once it is ready."""
    return report(adapter, compare_result, request), report_note(compare_result)


def build(app: gr.Blocks, tab: gr.Tab) -> None:
    compare_state = gr.State(None)
    intro("**Ask the original model and your fine-tune the same question.** Pick a run, type a question and press "
          "Enter; click **Reasoning** in a reply to unfold the chain of thought. Below: a batch compare on many "
          "prompts, and downloads.", "chat-intro")
    # On a shared server the page starts with no runs (each session's come when the page loads).
    runs = [] if spaces.multiuser() else workspace().adapters()
    empty = gr.Markdown(EMPTY_STATE, visible=not runs, elem_id="chat-empty", elem_classes="studio-empty-state")
    with gr.Row():
        adapter = gr.Dropdown(choices=runs, label="Fine-tune (a run, or type an adapter folder)",
                              allow_custom_value=True, scale=3, elem_id="chat-adapter",
                              info="The LoRA side uses this adapter; the base side the same model without it.")
        model = gr.Textbox(label="Base model (blank: the run's own)", placeholder="demo", scale=2, elem_id="chat-model",
                           info="Leave blank: the model the run was trained on.")
        refresh = gr.Button("↻ Runs", scale=0, elem_id="chat-refresh")
    with gr.Row():
        with gr.Column():
            base_chat = gr.Chatbot(label="Base model (no LoRA)", reasoning_tags=REASONING_TAGS, height=420,
                                   latex_delimiters=LATEX_DELIMITERS, elem_id="chat-base")
            base_stats = gr.Markdown(elem_id="chat-base-stats")
        with gr.Column():
            lora_chat = gr.Chatbot(label="Base + your LoRA", reasoning_tags=REASONING_TAGS, height=420,
                                   latex_delimiters=LATEX_DELIMITERS, elem_id="chat-lora")
            lora_stats = gr.Markdown(elem_id="chat-lora-stats")
    with gr.Row():
        prompt = gr.Textbox(label="Ask both", placeholder="Type a question and press Enter", scale=4,
                            elem_id="chat-prompt")
        send_button = gr.Button("Send", variant="primary", scale=0, elem_id="chat-send")
        stop_button = gr.Button("Stop", variant="stop", scale=0, elem_id="chat-stop")
        clear = gr.ClearButton([base_chat, lora_chat, base_stats, lora_stats], value="Clear", scale=0,
                               elem_id="chat-clear")
    examples = held_out_examples()
    if examples:
        gr.Examples(examples=[[text] for text in examples], inputs=prompt, label="Held-out demo prompts (click one)")
    with gr.Accordion("Sampling", open=False, elem_id="chat-sampling-accordion"):
        with gr.Row():
            temperature = gr.Slider(0.0, 1.5, value=DEFAULT_TEMPERATURE, step=0.05, label="Temperature",
                                    info="DeepSeek advises 0.5–0.7 (0.6) for R1 models: lower repeats, higher rambles.",
                                    elem_id="chat-temperature")
            top_p = gr.Slider(0.1, 1.0, value=DEFAULT_TOP_P, step=0.05, label="top_p", elem_id="chat-top-p",
                              info="DeepSeek advises 0.95.")
            max_new_tokens = gr.Number(default_max_new_tokens(), precision=0, minimum=1, label="Max new tokens",
                                       info=f"R1 reasoning runs long: use {GPU_MAX_NEW_TOKENS:,}+ on a GPU.",
                                       elem_id="chat-max-new-tokens")
            seed = gr.Number(0, precision=0, label="Seed (-1: random)", elem_id="chat-seed",
                             info="Same seed, same answers: compare fairly.")
            greedy = gr.Checkbox(False, label="Greedy (deterministic)", elem_id="chat-greedy",
                                 info="Always the likeliest token; R1 models may loop with it.")
    with gr.Accordion("Batch compare", open=False, elem_id="chat-compare-accordion"):
        with gr.Row():
            prompts_file = gr.File(label="Prompts (.jsonl with prompt [+ reference], or .txt) — blank: demo held-out set",
                                   type="filepath", file_types=[".jsonl", ".json", ".txt"], elem_id="chat-prompts-file")
            with gr.Column():
                pattern = gr.Textbox(DEMO_PATTERN, label="Answer pattern to count (a regular expression; blank: none)",
                                     info="The default counts answers in \\boxed{…}, the form the demo fine-tune "
                                          "teaches. Its first ( ) group, if any, is the answer compared with the "
                                          "reference when there is no \\boxed{…}.", elem_id="chat-pattern")
                pattern_words = gr.Markdown(pattern_in_words(DEMO_PATTERN), elem_id="chat-pattern-words")
            compare_button = gr.Button("Run batch compare", variant="primary", elem_id="chat-compare")
        compare_summary = gr.Markdown(elem_id="chat-compare-summary")
        compare_table = gr.Dataframe(headers=chatview.COMPARE_COLUMNS, datatype=chatview.COMPARE_DATATYPES,
                                     latex_delimiters=LATEX_DELIMITERS, interactive=False, wrap=True, max_height=420,
                                     label="Answers per prompt (format: keeps R1's shape; matches: the answer "
                                           "taken out equals the reference)", elem_id="chat-compare-table")
    with gr.Accordion("Export and share", open=False, elem_id="chat-export-accordion"):
        # Each download is made when a run is picked (the report again after a batch compare): one click saves it.
        with gr.Row():
            zip_download = gr.DownloadButton("⬇ Adapter (.zip, with its model card)", interactive=False,
                                             elem_id="chat-zip")
            report_download = gr.DownloadButton("⬇ Shareable report (one HTML file)", interactive=False,
                                                elem_id="chat-report")
        report_status = gr.Markdown(report_note(None), elem_id="chat-report-note")
        with gr.Row():
            merge_button = gr.Button("Merge into the base (safetensors)", elem_id="chat-merge")
        with gr.Row():
            repo_id = gr.Textbox(label="Hub repository", placeholder="you/r1-distill-lora", elem_id="chat-repo",
                                 info="Created if missing (private).")
            token = gr.Textbox(label="Hugging Face token (used once, never saved)", type="password",
                               elem_id="chat-token", info="A write token from huggingface.co/settings/tokens.")
            what = gr.Radio(["adapter", "merged model"], value="adapter", label="Push", elem_id="chat-push-what",
                            info="The adapter is small; the merged model loads without PEFT.")
            push_button = gr.Button("Push to the Hub", elem_id="chat-push")
        export_status = gr.Markdown(elem_id="chat-export-status")

    sampling = [max_new_tokens, temperature, top_p, seed, greedy]
    chat_inputs = [prompt, base_chat, lora_chat, adapter, model, *sampling]
    chat_outputs = [prompt, base_chat, lora_chat, base_stats, lora_stats]
    # One concurrency group for everything that runs the model: a second user waits instead of colliding.
    send_event = send_button.click(send, chat_inputs, chat_outputs, api_name="chat", concurrency_id="gpu",
                                   concurrency_limit=1)
    submit_event = prompt.submit(send, chat_inputs, chat_outputs, api_visibility="private", concurrency_id="gpu",
                                 concurrency_limit=1)
    stop_button.click(stop_generation, None, None, cancels=[send_event, submit_event], api_name="stop_chat")
    for event in (refresh.click, tab.select, app.load):
        event(adapter_choices, adapter, [adapter, empty], api_visibility="private", show_progress="hidden")
    compare_event = compare_button.click(batch_compare, [adapter, model, prompts_file, pattern, *sampling],
                                         [compare_state, compare_summary, compare_table], api_name="batch_compare",
                                         concurrency_id="gpu", concurrency_limit=1)
    pattern.change(pattern_in_words, pattern, pattern_words, api_visibility="private", show_progress="hidden")
    adapter.change(download_zip, adapter, zip_download, api_name="adapter_zip", show_progress="hidden")
    # Another run: the batch compare made with the last one is not this one's, so its report starts without it.
    adapter.change(forget_compare, None, [compare_state, compare_summary, compare_table, report_status],
                   api_visibility="private", show_progress="hidden").then(
        report, [adapter, compare_state], report_download, api_name="report", show_progress="hidden")
    compare_event.success(report_after_compare, [adapter, compare_state], [report_download, report_status],
                          api_visibility="private", show_progress="hidden")
    merge_button.click(merge, [adapter, model], export_status, api_name="merge", concurrency_id="gpu",
                       concurrency_limit=1)
    push_button.click(push, [adapter, repo_id, token, what], export_status, api_name="push")
