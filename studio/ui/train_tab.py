"""Train tab: dataset, model, method, presets, estimate, Start / Stop / Resume, live plots, run history."""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr

from studio import spaces
from studio.config import DEFAULT_MAX_LENGTH, DEFAULT_MODEL, DEMO_MODEL, KNOWN_MODELS, SAMPLES_DIR
from studio.data.prepared import cache_info, clear_cache
from studio.data.validate import parse_mapping_text
from studio.models import check_model_available
from studio.runs import COMPLETED, STOPPED, RunFolder
from studio.train import view as trainview
from studio.train.job import (CHECKPOINTING, DEMO_PRESET, EVAL_SPLIT_FRACTION, EVAL_SPLIT_MAX_ROWS, EVAL_SPLIT_MIN_ROWS,
                             PRESETS, TrainConfig, available_trackers, data_refusal, default_config, device_refusal,
                             liger_by_default)
from studio.ui.layout import by_elem_id, intro, number, session_of, user_errors
from studio.workspace import workspace

DEMO_DATA = str(SAMPLES_DIR / "demo-train.jsonl")
# Widgets a preset fills, in this order.
PRESET_FIELDS = ("method", "learning_rate", "lora_r", "lora_alpha", "lora_dropout", "max_length", "batch_size",
                 "grad_accum", "epochs", "warmup")
DEMO_SETTINGS = PRESETS[DEMO_PRESET]
HELP = {
    "learning_rate": (f"Real bases: 1e-4 for LoRA, 2e-4 for QLoRA (the seed's advice for the 7B/8B); too high and the "
                      f"loss turns NaN. The demo preset's {DEMO_SETTINGS['learning_rate']:g} is for the tiny demo "
                      "model only."),
    "max_length": ("Real bases: ≥ 4096, since R1 reasoning runs thousands of tokens and must stay whole. The demo "
                   f"preset's {DEMO_SETTINGS['max_length']} is for the tiny demo model, whose rows are short."),
    "lora_r": "Rank of the LoRA update: 16–64 is usual; higher learns more and costs more memory.",
    "lora_alpha": "Scale of the LoRA update; 2× r is a common choice.",
    "lora_dropout": "0 runs the fused LoRA path (faster); above 0 uses PEFT's own forward, which applies dropout.",
    "batch_size": ("Rows per step on the device; with packing on, sequences of up to max length tokens packed "
                   "from rows. Raise grad accumulation instead when memory is short."),
    "grad_accum": "Steps whose gradients add up before one optimizer update (effective batch = batch × this).",
    "epochs": "Passes over the data; max steps > 0 overrides it. 1–3 is usual.",
    "max_steps": "Stop after this many optimizer steps (0: run the epochs). Handy for a quick try.",
    "method": "LoRA trains on bf16 weights (never fp16: R1-Distill overflows in it); QLoRA on 4-bit NF4 weights "
              "(about half the memory, CUDA only).",
    "preset": ("Fills the settings below. R1-Distill: the seed's advice for the 7B/8B bases (lr 1e-4 LoRA / 2e-4 "
               f"QLoRA, max length {DEFAULT_MAX_LENGTH}, bf16). Demo: a fast run for the tiny demo model only."),
    "targets": "Which layers get LoRA: all linear layers learn more; q/k/v/o only is the seed's lighter choice.",
    "warmup": "Learning-rate warm-up: a fraction of the steps (e.g. 0.03) or a number of steps.",
    "scheduler": "How the learning rate falls after warm-up; cosine is the usual choice.",
    "eval_split": (f"Rows held out to plot an eval loss. auto: {EVAL_SPLIT_FRACTION:.0%} of a set of "
                   f"{EVAL_SPLIT_MIN_ROWS:,}+ rows (at most {EVAL_SPLIT_MAX_ROWS}); smaller sets, the demo's too, "
                   "keep every row for training. Or a fraction (0: none)."),
    "save_steps": ("Keep a checkpoint to resume from every N steps; 0 (auto): every 10 % of the steps. Stop always "
                   "saves one, and a crash loses at most one interval."),
    "save_minutes": "…and at least every M minutes of training, whichever comes first (0: no time limit).",
    "seed": "Same seed and settings, same run.",
    "checkpointing": ("Recompute activations to save GPU memory (about 30 % slower); the CPU-memory variant saves "
                      "0.4 GiB more. auto: the fastest setting the estimate says fits this GPU; off on CPU."),
    "trackers": "Off by default; pip install tensorboard, wandb or trackio to add one.",
    "speedups": ("The fused LoRA linear computes PEFT's LoRA in two fused matmul-adds (same result; 7B: 0.5 GiB "
                 "less, faster; needs dropout 0). Packing puts rows into sequences of up to max "
                 "length tokens with no padding (same loss; 2.6× on R1 rows of mixed length on an H200; on in the "
                 "7B/8B presets). Liger (pip install liger-kernel, GPU) never "
                 "builds the 152k-wide logits: 5.8 GiB less and 8 % faster on the 7B."),
}
POLL_S = 1.0  # how often live outputs refresh (timer and the ZeroGPU foreground loop)
TYPED_PATHS_OFF = ("On a Space, train on an uploaded file, a bundled sample or the Data tab's cleaned set: typed file "
                   "paths are off. Upload the file above instead.")


CONFIG_DEFAULTS = TrainConfig(data="", output="")


def preset_values(name):
    """The preset's value for each of PRESET_FIELDS, then the speed-ups it turns on (packing for the R1 bases)."""
    preset = PRESETS[name]
    values = [preset.get(field, getattr(CONFIG_DEFAULTS, field)) for field in PRESET_FIELDS]
    return [*values, default_speedups() + (["packing"] if preset.get("packing") else [])]


def preset_note(name) -> str:
    """The line under the preset: what the demo teaches and that its values suit the demo model alone, or the
    real bases' defaults."""
    if name == DEMO_PRESET:
        return (f"**The demo teaches a format, not arithmetic:** close the reasoning with `</think>`, then box the "
                f"answer (`\\boxed{{8}}`), which the tiny base never does. Its lr {DEMO_SETTINGS['learning_rate']:g} "
                f"and max length {DEMO_SETTINGS['max_length']} suit the demo model alone; for the 7B/8B bases pick an "
                f"R1-Distill preset (lr 1e-4 LoRA / 2e-4 QLoRA, max length ≥ {DEFAULT_MAX_LENGTH}, bf16).")
    preset = PRESETS[name]
    return (f"The seed's advice for the R1-Distill 7B/8B bases: lr {preset['learning_rate']:g}, max length "
            f"{preset['max_length']}, bf16 on the GPU; rows packed into sequences of max length tokens.")


def preset_for_model(model, method):
    if model == DEMO_MODEL:
        return DEMO_PRESET
    return "R1-Distill QLoRA (seed advice)" if method == "qlora" else "R1-Distill LoRA (seed advice)"


def build_config(data, model, method, learning_rate, lora_r, lora_alpha, lora_dropout, max_length, batch_size,
                 grad_accum, epochs, warmup, max_steps, targets, scheduler, eval_split, save_steps, seed,
                 checkpointing, trackers, speedups=None, mapping="", save_minutes=None, *, owner=None):
    space = workspace()
    speedups = default_speedups() if speedups is None else speedups
    model = (model or DEFAULT_MODEL).strip()
    return default_config(
        data=data, output=str(space.new_run_folder(model, method, owner)), model=model, method=method,
        learning_rate=number(learning_rate, "Learning rate", float), lora_r=number(lora_r, "LoRA r"),
        lora_alpha=number(lora_alpha, "LoRA alpha"), lora_dropout=number(lora_dropout, "LoRA dropout", float),
        max_length=number(max_length, "Max length"), batch_size=number(batch_size, "Batch size"),
        grad_accum=number(grad_accum, "Grad accumulation"), epochs=number(epochs, "Epochs", float),
        warmup=number(warmup, "Warmup", float), max_steps=int(max_steps or -1),
        target_modules=targets, scheduler=scheduler,
        eval_split=eval_fraction(eval_split),
        save_steps=int(save_steps or 0), seed=number(seed, "Seed"), gradient_checkpointing=CHECKPOINTING[checkpointing][0],
        offload_checkpoints=CHECKPOINTING[checkpointing][1], report_to=list(trackers or []),
        packing="packing" in speedups, liger="liger" in speedups, fused_lora="fused_lora" in speedups,
        mapping=parse_mapping_text(mapping),
        save_minutes=(CONFIG_DEFAULTS.save_minutes if save_minutes is None
                      else number(save_minutes, "Save every M minutes", float)))


def eval_fraction(value) -> float | None:
    """The eval split box's value: None for auto (or a cleared box), else the fraction typed or picked."""
    if value is None or str(value).strip().lower() in ("", "auto"):
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"Eval split {value!r} is not a fraction: pick auto, or type one such as 0.05.") from None


def default_speedups() -> list[str]:
    """The speed-ups the core turns on by itself here (Liger on a GPU when installed)."""
    return ["fused_lora", "liger"] if liger_by_default() else ["fused_lora"]


def owner_of(request: gr.Request | None) -> str | None:
    """Whose runs this call sees: on a shared server its browser session's owner token (studio.spaces.run_owner),
    so a visitor lists, resumes and stops only its own runs; None on the studio's own machine (every run)."""
    return spaces.run_owner(session_of(request)) if spaces.multiuser() else None


def shown(text: str) -> str:
    """Text for the page: on a shared server with every server path cut to its last part."""
    return spaces.scrub_paths(text) if spaces.multiuser() else text


def dataset_refusal(data: str, mapping: dict | None) -> str | None:
    """Why a run cannot train on the dataset box's value (None when it can): typed paths off on a shared server,
    else the dataset's own reason (studio.train.job.data_refusal: a folder, a missing file, no row without errors)."""
    if not spaces.path_allowed_on_space(data, gr.utils.get_upload_folder()):
        return TYPED_PATHS_OFF
    return data_refusal(data, mapping)


@user_errors
def show_estimate(data, *settings):
    try:
        config = build_config(data or DEMO_DATA, *settings)
    except (ValueError, TypeError) as error:
        return f"❔ No estimate: {error}"
    refusal = dataset_refusal(data, config.mapping) if data else None  # no dataset: Start asks for one
    return shown(trainview.estimate_markdown(config, refusal))


def start_refusal(config: TrainConfig) -> str | None:
    """What Start refuses before a run folder is made, in the badge's words: the device's reason (QLoRA without
    CUDA, a run the estimate says will not fit), then the dataset's. On ZeroGPU the device is only known inside
    the GPU call: train_in_foreground checks it there."""
    return (None if spaces.on_zero_gpu() else device_refusal(config)) or dataset_refusal(config.data, config.mapping)


@user_errors
def start_from_page(request: gr.Request, data, *settings):
    """The Start button: `start` for the page's session (the request first: Gradio passes none after *settings)."""
    yield from start(data, *settings, request=request)


@user_errors
def start(data, *settings, request: gr.Request | None = None):
    if not data:
        raise gr.Error("Choose a dataset: clean one in the Data tab, upload a file, or use the demo set.")
    if not spaces.path_allowed_on_space(data, gr.utils.get_upload_folder()):
        raise gr.Error(TYPED_PATHS_OFF)
    owner = owner_of(request)
    config = build_config(data, *settings, owner=owner)
    check_model_available(config.model)  # offline and not downloaded: say so now, not after loading the data
    refusal = start_refusal(config)
    if refusal:
        raise gr.Error(refusal, duration=None)
    if spaces.on_zero_gpu():
        yield from train_in_foreground(config=config, owner=owner)
        return
    workspace().start(config, owner)
    gr.Info(f"Training started: {shown_run(config.output)}")
    yield live_outputs(owner)


def shown_run(folder: str) -> str:
    """A run as a message names it: its folder on the studio's own machine, its name only on a shared server."""
    return Path(folder).name if spaces.multiuser() else folder


@user_errors
def resume(run_name, request: gr.Request = None):
    if not run_name:
        raise gr.Error("Select a stopped or interrupted run in the history table first.")
    owner = owner_of(request)
    refusal = workspace().resume_refusal(run_name, owner)  # completed or training now: said before any GPU is asked for
    if refusal:
        raise gr.Error(refusal)
    if spaces.on_zero_gpu():
        yield from train_in_foreground(run_name=run_name, owner=owner)
        return
    workspace().resume(run_name, owner)
    yield live_outputs(owner)


@spaces.gpu(duration=spaces.TRAIN_GPU_SECONDS)
def train_in_foreground(config=None, run_name=None, owner=None):
    """ZeroGPU: a GPU exists only inside this call, so the job's thread starts here and this loop polls it,
    streaming the live outputs (the timer stays off) until the run ends. The device's refusal is checked here,
    where the lent GPU is seen, still before a run folder is made."""
    if config is not None:
        refusal = device_refusal(config)
        if refusal:
            raise gr.Error(shown(refusal), duration=None)
    job = workspace().resume(run_name, owner) if run_name else workspace().start(config, owner)
    while job.running:
        yield live_outputs(owner, poll=False)
        time.sleep(POLL_S)
    yield live_outputs(owner, poll=False)


@user_errors
def show_cache():
    return trainview.cache_markdown(cache_info(), shared=spaces.multiuser())


@user_errors
def clear_prepared():
    """Delete the prepared tokens (the studio's own machine only: on a shared server they are everyone's)."""
    if spaces.multiuser():
        raise gr.Error("On this shared studio the prepared tokens are kept for every visitor and cleared by age.")
    if workspace().live()["running"]:
        raise gr.Error("A run is training from the prepared tokens: clear them when it ends.")
    freed = clear_cache()
    gr.Info(f"Cleared {freed / 2**20:,.1f} MiB of prepared tokens: the next run tokenizes its data again.")
    return show_cache()


@user_errors
def stop(request: gr.Request = None):
    owner = owner_of(request)
    if not workspace().stop(owner):
        gr.Warning("No training run of yours is going." if owner is not None else "No training run is going.")


@user_errors
def refresh(request: gr.Request = None):
    """Everything live, read from the workspace's job and the disk: this session's runs only on a shared server."""
    return live_outputs(owner_of(request))


def live_outputs(owner: str | None, poll: bool = True):
    """The live outputs for `owner`'s runs (every run when None).

    `poll`: whether the page's timer keeps polling while the job runs (off when a foreground call streams).
    """
    live = workspace().live(owner)
    runs = workspace().history(owner)
    status, metrics, running, name = live["status"], live["metrics"], live["running"], live["name"]
    if name is None and not live["busy"] and runs:  # after a restart: the newest run on disk, where it stopped
        name, status, metrics = runs[0]["name"], last_run_status(runs[0]), RunFolder(runs[0]["path"]).read_metrics()
    markdown = trainview.status_markdown(status, name)
    if live["busy"]:  # another visitor's run holds the device: said, unnamed
        markdown += "\n\nA training run is going on this studio: yours can start when it ends."
    finished = bool(name) and status.get("state") in (COMPLETED, STOPPED) and not running
    return (
        shown(markdown),
        trainview.progress_html(status),
        plot_update(trainview.loss_frame(metrics), "loss"),
        plot_update(trainview.series_frame(metrics, "learning_rate"), "learning_rate"),
        plot_update(trainview.series_frame(metrics, "tokens_per_s"), "tokens_per_s"),
        trainview.history_frame(runs),
        gr.update(active=running and poll),  # plain updates: a ZeroGPU worker sends them back pickled
        gr.update(interactive=not running),
        gr.update(interactive=running),
        gr.update(visible=finished),  # "Chat with this run"
        name if finished else "",  # the run that button opens in the Chat tab
    )


def last_run_status(run: dict) -> dict:
    """A run of the history as the status line shows it: its status file, with the state the history read
    (a run whose process is gone reads `interrupted`, not `running`)."""
    return {**RunFolder(run["path"]).read_status(), "state": run["state"], "last_run": True}


def plot_update(frame, plot: str):
    # A LinePlot with a colour column never draws if it first got an empty frame: an empty one gets None.
    return gr.update(**trainview.plot_update(frame, plot))


def resume_choice(run_name, owner: str | None = None):
    """(Resume button update, the note beside it) for the selected run: disabled, with the reason, for a run that
    cannot be resumed (completed, training now)."""
    if not run_name:
        return gr.update(interactive=True), ""
    try:
        refusal = workspace().resume_refusal(run_name, owner)
    except ValueError as error:
        refusal = str(error)
    if refusal:
        return gr.update(interactive=False), f"<small>⛔ {shown(refusal)}</small>"
    return gr.update(interactive=True), ""


@user_errors
def select_run(event: gr.SelectData, request: gr.Request = None):
    name = event.row_value[0]
    return name, *resume_choice(name, owner_of(request))


@user_errors
def use_dataset(choice):
    """The Data tab's hand-over: its cleaned set (already normalized), or a file with the mapping it was read with."""
    choice = choice or {}
    return choice.get("path") or DEMO_DATA, choice.get("mapping") or ""


@user_errors
def uploaded(path):
    return path, ""  # a new file: its mapping is detected again


@user_errors
def open_in_chat(run_name, request: gr.Request = None):
    """The finished run's button: the Chat tab, with the run picked as the fine-tune."""
    if not run_name:
        raise gr.Error("No finished run to chat with yet: train one first.")
    owner = owner_of(request)
    return gr.Tabs(selected="chat"), gr.update(choices=workspace().adapters(owner), value=run_name)


def link_to_chat(app: gr.Blocks, chat_button: gr.Button, chat_run: gr.State) -> None:
    """Wire build's "Chat with this run" button (and the run it holds) to the Chat tab, once every tab is built:
    the button opens a tab and fills a widget that are built after this one."""
    chat_button.click(open_in_chat, chat_run, [by_elem_id(app, "studio-tabs"), by_elem_id(app, "chat-adapter")],
                      api_visibility="private")


@user_errors
def build_preset_for_model(model, method):
    return preset_for_model(model, method)


def plot_words(plot: str) -> dict:
    """A live plot's axis titles and number format, and its label while it is empty."""
    _, y_title, y_format, _ = trainview.PLOTS[plot]
    return {"x_title": "Step (optimizer updates)", "y_title": y_title, "y_axis_format": y_format,
            "title": trainview.PLOT_TITLES[plot],
            "label": trainview.empty_plot_label(plot)}


def build(app: gr.Blocks, cleaned_dataset: gr.State) -> tuple[gr.Button, gr.State]:
    """The tab's widgets and events; returns the "Chat with this run" button and its run for link_to_chat."""
    defaults = dict(zip(PRESET_FIELDS, preset_values(DEMO_PRESET)))
    intro("**Train a LoRA on top of the base model.** The demo model and data are filled in: press **Start** "
          "and watch the loss fall. Stop whenever you like and resume later from the history below.", "train-intro")
    with gr.Row():
        with gr.Column(scale=2):
            data = gr.Textbox(value=DEMO_DATA, label="Dataset (the Data tab's cleaned set lands here)",
                              info="A .jsonl/.json/.csv/.parquet file; rows with errors are left out.",
                              elem_id="train-data")
            data_mapping = gr.Textbox("", label="Field mapping", placeholder="detected", elem_id="train-mapping",
                                      info="Which fields hold what, as the Data tab read them, e.g. prompt=Question, "
                                           "reasoning=Complex_CoT, answer=Response; blank: detected.")
            upload = gr.File(label="…or upload one", type="filepath", file_types=[".jsonl", ".json", ".csv", ".parquet"],
                             height=140, elem_id="train-upload")
        with gr.Column(scale=2):
            model = gr.Dropdown(choices=[(f"{name} — {about}", name) for name, about in KNOWN_MODELS.items()],
                                value=DEFAULT_MODEL, allow_custom_value=True, label="Base model",
                                info="demo, an R1-Distill base from the Hub, or a local model folder.",
                                elem_id="train-model")
            with gr.Row():
                method = gr.Radio(["lora", "qlora"], value=defaults["method"], label="Method", info=HELP["method"],
                                  elem_id="train-method")
                preset = gr.Dropdown(list(PRESETS), value=DEMO_PRESET, label="Preset", info=HELP["preset"],
                                     elem_id="train-preset")
            preset_words = gr.Markdown(preset_note(DEMO_PRESET), elem_id="train-preset-note")
    with gr.Row():
        learning_rate = gr.Number(defaults["learning_rate"], label="Learning rate", info=HELP["learning_rate"],
                                  elem_id="train-lr")
        epochs = gr.Number(defaults["epochs"], label="Epochs", info=HELP["epochs"], elem_id="train-epochs")
        max_steps = gr.Number(0, precision=0, label="Max steps (0 = use epochs)", info=HELP["max_steps"],
                              elem_id="train-max-steps")
        max_length = gr.Number(defaults["max_length"], precision=0, label="Max length", info=HELP["max_length"],
                               elem_id="train-max-length")
        batch_size = gr.Number(defaults["batch_size"], precision=0, label="Batch size", info=HELP["batch_size"],
                               elem_id="train-batch-size")
        grad_accum = gr.Number(defaults["grad_accum"], precision=0, label="Grad accumulation", info=HELP["grad_accum"],
                               elem_id="train-grad-accum")
    with gr.Accordion("Advanced", open=False, elem_id="train-advanced"):
        with gr.Row():
            lora_r = gr.Number(defaults["lora_r"], precision=0, label="LoRA r", info=HELP["lora_r"], elem_id="train-r")
            lora_alpha = gr.Number(defaults["lora_alpha"], precision=0, label="LoRA alpha", info=HELP["lora_alpha"],
                                   elem_id="train-alpha")
            lora_dropout = gr.Number(defaults["lora_dropout"], label="LoRA dropout", info=HELP["lora_dropout"],
                                     elem_id="train-dropout")
            targets = gr.Radio([("all linear layers", "all-linear"), ("q/k/v/o only (seed)", "attention")],
                               value="all-linear", label="LoRA targets", info=HELP["targets"], elem_id="train-targets")
        with gr.Row():
            warmup = gr.Number(defaults["warmup"], label="Warmup (fraction < 1, or steps)", info=HELP["warmup"],
                               elem_id="train-warmup")
            scheduler = gr.Dropdown(["cosine", "linear", "constant_with_warmup"], value="cosine",
                                    label="LR schedule", info=HELP["scheduler"], elem_id="train-scheduler")
            eval_split = gr.Dropdown([("auto", "auto"), ("none", "0"), ("5 %", "0.05"), ("10 %", "0.1")],
                                     value="auto", allow_custom_value=True, label="Eval split (fraction of the rows)",
                                     info=HELP["eval_split"], elem_id="train-eval-split")
            save_steps = gr.Number(0, precision=0, label="Save every N steps (0 = auto: every 10 %)",
                                   info=HELP["save_steps"], elem_id="train-save")
            save_minutes = gr.Number(CONFIG_DEFAULTS.save_minutes, label="…and every M minutes (0 = no limit)",
                                     info=HELP["save_minutes"], elem_id="train-save-minutes")
            seed = gr.Number(42, precision=0, label="Seed", info=HELP["seed"], elem_id="train-seed")
            checkpointing = gr.Radio([("auto", "auto"), ("on", "on"), ("on, saved inputs in CPU memory", "offload"),
                                      ("off", "off")], value="auto", label="Gradient checkpointing",
                                     info=HELP["checkpointing"], elem_id="train-checkpointing")
            trackers = gr.CheckboxGroup(available_trackers(), value=[], label="Experiment tracking (installed ones)",
                                        info=HELP["trackers"], elem_id="train-trackers")
            speedups = gr.CheckboxGroup([("fused LoRA linear", "fused_lora"), ("padding-free packing", "packing"),
                                         ("Liger fused cross-entropy", "liger")],
                                        value=default_speedups(), label="Speed-ups", info=HELP["speedups"],
                                        elem_id="train-speedups")
    with gr.Row(equal_height=True):
        estimate = gr.Markdown(elem_id="train-estimate")  # the "fits on your device" badge, next to Start
        with gr.Column(scale=0, min_width=260):
            start_button = gr.Button("▶ Start", variant="primary", elem_id="train-start")
            stop_button = gr.Button("■ Stop", variant="stop", interactive=False, elem_id="train-stop")
    with gr.Row():  # not equal heights: the button keeps its own beside a status of many lines
        status = gr.Markdown(trainview.status_markdown({}, None), elem_id="train-status")
        chat_button = gr.Button("💬 Chat with this run", visible=False, scale=0, min_width=220,
                                elem_id="train-open-chat")
    chat_run = gr.State("")  # the finished run the button opens in the Chat tab
    progress = gr.HTML(trainview.progress_html({}), elem_id="train-progress")
    with gr.Row():
        loss_plot = gr.LinePlot(None, x="step", y="value", color="series", color_title="Curve",
                                color_map={"loss": "#6366f1", "eval loss": "#f97316"}, elem_id="train-loss-plot",
                                **plot_words("loss"))
        lr_plot = gr.LinePlot(None, x="step", y="learning_rate", elem_id="train-lr-plot", **plot_words("learning_rate"))
        speed_plot = gr.LinePlot(None, x="step", y="tokens_per_s", elem_id="train-speed-plot",
                                 **plot_words("tokens_per_s"))
    gr.Markdown("### Run history", elem_id="train-history-title")
    # On a shared server the page starts with no runs (each session's come with its first refresh).
    history = gr.Dataframe(trainview.history_frame([] if spaces.multiuser() else workspace().history()),
                           interactive=False,
                           label="Runs (select one to resume it or to chat with it)", elem_id="train-history")
    with gr.Row():
        selected_run = gr.Textbox(label="Selected run", interactive=False, elem_id="train-selected-run",
                                  info="Click a row of the history to select it.")
        resume_button = gr.Button("⟳ Resume selected run", elem_id="train-resume")
    resume_note = gr.Markdown("", elem_id="train-resume-note")
    with gr.Row(equal_height=True):
        cache_note = gr.Markdown(elem_id="train-cache")
        clear_cache_button = gr.Button("Clear prepared tokens", size="sm", scale=0, min_width=200,
                                       visible=not spaces.multiuser(), elem_id="train-clear-cache")
    timer = gr.Timer(POLL_S, active=False)

    settings = [model, method, learning_rate, lora_r, lora_alpha, lora_dropout, max_length, batch_size, grad_accum,
                epochs, warmup, max_steps, targets, scheduler, eval_split, save_steps, seed, checkpointing, trackers,
                speedups, data_mapping, save_minutes]  # build_config's order (save_minutes last: added later)
    preset_widgets = [method, learning_rate, lora_r, lora_alpha, lora_dropout, max_length, batch_size, grad_accum,
                      epochs, warmup, speedups]
    live = [status, progress, loss_plot, lr_plot, speed_plot, history, timer, start_button, stop_button, chat_button,
            chat_run]

    cleaned_dataset.change(use_dataset, cleaned_dataset, [data, data_mapping], api_visibility="private")
    for widget in [data, *settings]:
        widget.change(show_estimate, [data, *settings], estimate, api_visibility="private", show_progress="hidden")
    app.load(show_estimate, [data, *settings], estimate, api_name="estimate")
    upload.upload(uploaded, upload, [data, data_mapping], api_visibility="private")
    preset.input(user_errors(preset_values), preset, preset_widgets, api_visibility="private")
    preset.change(user_errors(preset_note), preset, preset_words, api_visibility="private", show_progress="hidden")
    model.input(build_preset_for_model, [model, method], preset, api_visibility="private").then(
        user_errors(preset_values), preset, preset_widgets, api_visibility="private")
    # On ZeroGPU, Start streams the whole run: one at a time, in the same queue as everything that uses the GPU.
    start_event = start_button.click(start_from_page, [data, *settings], live, api_name="start_training",
                                     show_progress="hidden", concurrency_id="gpu", concurrency_limit=1)
    resume_event = resume_button.click(resume, selected_run, live, api_name="resume_training", show_progress="hidden",
                                       concurrency_id="gpu", concurrency_limit=1)
    # Stop asks the job to stop at the next step and save; on ZeroGPU the job runs in a GPU worker process and
    # the request reaches it through the run folder (Workspace.stop), so the streaming call ends on its own.
    stop_button.click(stop, None, None, api_name="stop_training")
    history.select(select_run, None, [selected_run, resume_button, resume_note], api_visibility="private")
    timer.tick(refresh, None, live, api_visibility="private", show_progress="hidden")
    app.load(refresh, None, live, api_name="training_status")  # a reloaded page re-attaches to the running job
    app.load(show_cache, None, cache_note, api_name="prepared_cache")
    history.change(show_cache, None, cache_note, api_visibility="private", show_progress="hidden")
    clear_cache_button.click(clear_prepared, None, cache_note, api_name="clear_prepared_cache")
    return chat_button, chat_run
