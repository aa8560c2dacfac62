"""The studio's Blocks and its launch settings."""

from __future__ import annotations

import gradio as gr
from starlette.middleware import Middleware

from studio import spaces
from studio.config import DATASETS_DIR, SAMPLES_DIR, SESSION_CAPACITY, STUDIO_HOME
from studio.ui import chat_tab, data_tab, train_tab
from studio.ui.layout import CSS, THEME, by_elem_id, header, space_banner


def build_app() -> gr.Blocks:
    # Uploads and the files handed out for download are deleted once older than STUDIO_FILE_TTL_S.
    with gr.Blocks(title="R1 LoRA Studio", delete_cache=spaces.delete_cache()) as app:
        header()
        space_banner(spaces.space_notice())
        cleaned_dataset = gr.State(None)  # {path, mapping}: the Data tab's cleaned or mapped set, for the Train tab
        with gr.Tabs(elem_id="studio-tabs"):
            with gr.Tab("1. Data", id="data", elem_id="tab-data"):
                length_boxes = data_tab.build(app, cleaned_dataset)
            with gr.Tab("2. Train", id="train", elem_id="tab-train"):
                chat_link = train_tab.build(app, cleaned_dataset)
            with gr.Tab("3. Chat", id="chat", elem_id="tab-chat") as chat:
                chat_tab.build(app, chat)
        data_tab.follow_training(length_boxes, by_elem_id(app, "train-model"), by_elem_id(app, "train-max-length"))
        train_tab.link_to_chat(app, *chat_link)
        app.unload(data_tab.forget_session)  # a closed tab frees its report at once
    app.queue()  # streaming, progress and one-at-a-time GPU work all need the queue
    return app


class ClientAddress:
    """ASGI middleware: records who each request comes from (spaces.REQUEST_CLIENT) for the login's per-client
    slow-down, since Gradio calls an auth function with the user name and password only."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        peer = (scope.get("client") or (None,))[0]
        forwarded = next((value.decode("latin-1") for name, value in scope.get("headers") or ()
                          if name == b"x-forwarded-for"), None)
        token = spaces.REQUEST_CLIENT.set(spaces.client_address(peer, forwarded))
        try:
            return await self.app(scope, receive, send)
        finally:
            spaces.REQUEST_CLIENT.reset(token)


def launch_settings() -> dict:
    """Keyword arguments for `Blocks.launch` (also used by tests that start the app on a free port).

    A malformed STUDIO_AUTH (or another STUDIO_* setting) raises ValueError, so the studio stops at start-up with
    the reason. On a shared server (spaces.multiuser) only the samples are served as a folder: what a session
    makes is handed to it through Gradio's own per-file cache, under a name nobody else can guess.
    """
    spaces.check_settings()
    DATASETS_DIR.mkdir(parents=True, exist_ok=True)
    settings = {
        "theme": THEME,
        "css": CSS,
        "max_file_size": spaces.max_upload(),
        # Serve only what the pages link to: samples and (on the studio's own machine) the studio's outputs.
        "allowed_paths": [str(SAMPLES_DIR)] if spaces.multiuser() else [str(SAMPLES_DIR), str(STUDIO_HOME)],
        "ssr_mode": False,
        "show_error": True,  # gr.Error messages (cause and fix) reach the page as toasts
        "state_session_capacity": SESSION_CAPACITY,  # what Gradio keeps per session (the outputs shown) is bounded
    }
    auth = spaces.auth_from_env()
    if auth:
        guard = spaces.LoginGuard(*auth)  # STUDIO_AUTH behind the per-client slow-down of failed tries

        async def check_login(user: str, password: str) -> bool:
            client = spaces.REQUEST_CLIENT.get() or f"user:{user}"  # no address known: slow down per user name
            return await guard.attempt(client, user, password)

        check_login.guard = guard  # tests read how many tries were checked
        settings["auth"] = check_login
        settings["auth_message"] = "R1 LoRA Studio: sign in with the user and password this studio was started with."
        settings["app_kwargs"] = {"middleware": [Middleware(ClientAddress)]}
    return settings
