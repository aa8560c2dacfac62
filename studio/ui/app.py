"""The studio's Blocks and its launch settings."""

from __future__ import annotations

import gradio as gr

from studio import spaces
from studio.config import DATASETS_DIR, SAMPLES_DIR, STUDIO_HOME
from studio.ui import chat_tab, data_tab, train_tab
from studio.ui.layout import CSS, THEME, header, space_banner


def build_app() -> gr.Blocks:
    with gr.Blocks(title="R1 LoRA Studio") as app:
        header()
        space_banner(spaces.space_notice())
        cleaned_dataset = gr.State(None)  # {path, mapping}: the Data tab's cleaned or mapped set, for the Train tab
        with gr.Tabs(elem_id="studio-tabs"):
            with gr.Tab("1. Data", id="data", elem_id="tab-data"):
                data_tab.build(cleaned_dataset)
            with gr.Tab("2. Train", id="train", elem_id="tab-train"):
                train_tab.build(app, cleaned_dataset)
            with gr.Tab("3. Chat", id="chat", elem_id="tab-chat") as chat:
                chat_tab.build(app, chat)
    app.queue()  # streaming, progress and one-at-a-time GPU work all need the queue
    return app


def launch_settings() -> dict:
    """Keyword arguments for `Blocks.launch` (also used by tests that start the app on a free port).

    A malformed STUDIO_AUTH raises ValueError, so the studio stops at start-up with the reason.
    """
    DATASETS_DIR.mkdir(parents=True, exist_ok=True)
    settings = {
        "theme": THEME,
        "css": CSS,
        "max_file_size": spaces.max_upload(),
        # Serve only what the pages link to: samples and the studio's own outputs.
        "allowed_paths": [str(SAMPLES_DIR), str(STUDIO_HOME)],
        "ssr_mode": False,
        "show_error": True,  # gr.Error messages (cause and fix) reach the page as toasts
    }
    auth = spaces.auth_from_env()
    if auth:
        settings["auth"] = [auth]
        settings["auth_message"] = "R1 LoRA Studio: sign in with the user and password this studio was started with."
    return settings
