"""The studio's Blocks and its launch settings."""

from __future__ import annotations

import gradio as gr

from studio.config import DATASETS_DIR, SAMPLES_DIR, STUDIO_HOME
from studio.ui import data_tab, train_tab
from studio.ui.layout import CSS, HEADER, THEME

MAX_UPLOAD = "1gb"


def build_app() -> gr.Blocks:
    with gr.Blocks(title="R1 LoRA Studio") as app:
        gr.Markdown(HEADER, elem_id="studio-header")
        cleaned_dataset = gr.State(None)  # the Data tab's cleaned set, the Train tab's default
        with gr.Tabs():
            with gr.Tab("1. Data", id="data", elem_id="tab-data"):
                data_tab.build(cleaned_dataset)
            with gr.Tab("2. Train", id="train", elem_id="tab-train"):
                train_tab.build(app, cleaned_dataset)
    return app


def launch_settings() -> dict:
    """Keyword arguments for `Blocks.launch` (also used by tests that start the app on a free port)."""
    DATASETS_DIR.mkdir(parents=True, exist_ok=True)
    return {
        "theme": THEME,
        "css": CSS,
        "max_file_size": MAX_UPLOAD,
        # Serve only what the pages link to: samples and the studio's own outputs.
        "allowed_paths": [str(SAMPLES_DIR), str(STUDIO_HOME)],
        "ssr_mode": False,
    }
