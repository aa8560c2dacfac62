"""Layout bits every tab shares: theme, css, header, tab intros, the Space banner, and errors as toasts."""

from __future__ import annotations

import functools
import inspect
import logging
import secrets

import gradio as gr

from studio import spaces
from studio.chat.generate import ModelBusy
from studio.models import ModelNotFound, UnsupportedSetup
from studio.data.readers import DatasetUnreadable
from studio.train.job import JobBusy

log = logging.getLogger("studio.ui")

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate")
CSS = """
#studio-header h1 { margin-bottom: 0.1em; }
.studio-lead { font-size: 1.05em; margin: 0 0 0.6em 0; }
.studio-steps { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 12px; margin-bottom: 0.6em; }
.studio-step { border: 1px solid var(--border-color-primary); border-radius: 12px; padding: 10px 14px;
               background: var(--background-fill-secondary); }
.studio-step b { display: block; font-size: 1.05em; margin-bottom: 2px; }
.studio-step span { font-size: 0.92em; opacity: 0.85; }
.studio-hint { border-left: 4px solid var(--color-accent); padding: 6px 12px; border-radius: 6px;
               background: var(--background-fill-secondary); font-size: 0.95em; }
#space-banner { border: 1px solid #f59e0b; background: #fffbeb; color: #78350f; border-radius: 10px;
                padding: 8px 14px; }
.prose.studio-intro { font-size: 0.95em; opacity: 0.9; }
.block.studio-empty-state { border: 1px dashed var(--border-color-primary); border-radius: 10px; padding: 10px 14px;
                background: var(--background-fill-secondary); }
#train-estimate { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 4px 12px;
                  background: var(--background-fill-secondary); }
.studio-progress { height: 14px; border-radius: 7px; background: var(--neutral-200); overflow: hidden; }
.studio-progress-bar { height: 100%; background: var(--primary-500); transition: width 0.5s; }
.studio-progress-text { font-size: 0.9em; margin-top: 4px; }
@media (max-width: 800px) { .studio-steps { grid-template-columns: 1fr; } }
/* From a phone's 390 px to a desktop's width. A box of sentences keeps room for them: its row wraps instead of
   squeezing it to a word a line (Gradio lets a row's children shrink to 160 px). */
#train-estimate, #train-cache { min-width: min(100%, 320px) !important; }
#chat-adapter { min-width: min(100%, 300px) !important; }  /* a run's name is long: it shows whole */
/* Buttons keep a button's height: in a row of equal height Gradio stretches them to the tallest neighbour. */
#train-start, #train-stop, #train-open-chat { flex-grow: 0 !important; }
#train-open-chat { align-self: flex-start; }
.column:has(> #train-start) { justify-content: center; }
#train-clear-cache { align-self: center; }
/* The Data tab's tables size their columns as shares of their width: a long code or word breaks inside its
   column instead of pushing the others off-screen. */
.studio-table .body-cell .cell-wrap { overflow-wrap: anywhere; }
@media (max-width: 640px) {
  .studio-table .cell-wrap, .studio-table .header-cell { font-size: 12px !important; font-family: var(--font);
                                                         padding: 4px 3px !important; }
}
"""

HEADER = """# 🧠 R1 LoRA Studio
<p class="studio-lead">Teach a DeepSeek-R1 reasoning model something new with your own examples, then see what
changed. Three steps, one tab each:</p>
<div class="studio-steps">
<div class="studio-step"><b>1 · Data — check your examples</b><span>Upload a file. The studio finds what would
break R1 training (missing or unclosed <code>&lt;think&gt;</code>, cut-off reasoning…) and fixes it.</span></div>
<div class="studio-step"><b>2 · Train — press Start</b><span>LoRA or QLoRA with a live loss plot. Stop and
resume whenever you like; runs are kept.</span></div>
<div class="studio-step"><b>3 · Chat — compare</b><span>Ask the original model and your fine-tune the same
question, side by side, and download the result.</span></div>
</div>
<div class="studio-hint">💡 <b>Start with the demo:</b> nothing to install or upload. Open <b>2. Train</b> and
press <b>Start</b> (the demo model and data are filled in; under a minute on a laptop CPU), then ask a sum in
<b>3. Chat</b>. To see the checks at work, pick <code>broken-sample.jsonl</code> in <b>1. Data</b>.</div>"""


def header() -> None:
    gr.Markdown(HEADER, elem_id="studio-header")


def intro(text: str, elem_id: str) -> gr.Markdown:
    """The one line at the top of each tab that says what to do there."""
    return gr.Markdown(text, elem_id=elem_id, elem_classes="studio-intro")


def space_banner(notice: str | None) -> None:
    """The Space's limits, stated once at the top (nothing when running locally)."""
    if notice:
        gr.Markdown(notice, elem_id="space-banner")


# Errors whose message is written for the user: shown as a toast, as is.
USER_ERRORS = (DatasetUnreadable, ModelNotFound, UnsupportedSetup, JobBusy, ModelBusy, ValueError)
UNEXPECTED_FIX = ("What to do: check the settings and try again; if it keeps happening, the terminal running the "
                  "studio has the details.")


def as_toast(error: Exception, handler: str = "a studio handler") -> gr.Error:
    """A gr.Error for any exception: the message, never a traceback on the page.

    In the terminal an expected error (a gr.Error a handler raised, or one of USER_ERRORS) is one line naming the
    handler: it is the user's to fix, and a traceback would bury the ones that are not. An unexpected error is
    logged with its traceback, once (Gradio is told not to print it again).
    On a shared server (spaces.multiuser) the message carries no server paths: each is cut to its last part.
    """
    if isinstance(error, gr.Error):
        toast = error
    elif isinstance(error, USER_ERRORS):
        toast = gr.Error(str(error), duration=None)
    else:
        log.exception("unexpected error in %s", handler)
        text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        cause = f"{type(error).__name__}: {text}" if text else type(error).__name__
        toast = gr.Error(f"Something went wrong ({cause}). {UNEXPECTED_FIX}", duration=None)
    if spaces.multiuser():
        toast.message = spaces.scrub_paths(str(toast.message))
    if isinstance(error, (gr.Error, *USER_ERRORS)):
        log.warning("%s: %s", handler, " ".join(str(toast.message).split()))
    toast.print_exception = False
    return toast


def session_of(request: gr.Request | None) -> str:
    """The browser session a call comes from (Gradio's session hash): the key of what the studio keeps for it.
    A call with none (a bare HTTP call) gets a key of its own, shared with nobody."""
    return getattr(request, "session_hash", None) or f"no-session-{secrets.token_urlsafe(16)}"


def number(value, field: str, kind=int):
    """A number box's value as `kind`; a cleared box (None) is a message naming the field, not a TypeError."""
    if value is None or value == "":
        raise ValueError(f"{field} is empty: enter a number.")
    return kind(value)


def user_errors(function):
    """Every handler wears this: any exception becomes a toast with its cause (and a fix where known)."""
    if inspect.isgeneratorfunction(function):  # streaming handlers: errors arrive while iterating

        @functools.wraps(function)
        def streaming(*args, **kwargs):
            try:
                yield from function(*args, **kwargs)
            except Exception as error:
                raise as_toast(error, function.__name__) from None

        streaming.user_errors = True
        return streaming

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            raise as_toast(error, function.__name__) from None

    wrapper.user_errors = True
    return wrapper


def by_elem_id(blocks: gr.Blocks, elem_id: str) -> gr.components.Component:
    """The one component of `blocks` with this elem_id: how the page wires one tab's widget to another's when
    each tab builds its own."""
    found = [block for block in blocks.blocks.values() if getattr(block, "elem_id", None) == elem_id]
    if len(found) != 1:
        raise LookupError(f"the page has {len(found)} components with elem_id {elem_id!r}, not one")
    return found[0]


def core_progress(progress: gr.Progress):
    """Adapt gr.Progress to the core's progress(fraction, description) callback."""
    return lambda fraction, description: progress(fraction, desc=description)
