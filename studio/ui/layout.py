"""Layout bits every tab shares: theme, css, header, and turning core errors into toasts."""

from __future__ import annotations

import functools

import gradio as gr

from studio.models import ModelNotFound
from studio.records import DatasetUnreadable

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate")
CSS = """
#studio-header h1 { margin-bottom: 0.2em; }
.studio-steps { font-size: 0.95em; opacity: 0.85; }
.studio-progress { height: 14px; border-radius: 7px; background: var(--neutral-200); overflow: hidden; }
.studio-progress-bar { height: 100%; background: var(--primary-500); transition: width 0.5s; }
.studio-progress-text { font-size: 0.9em; margin-top: 4px; }
"""

HEADER = """# R1 LoRA Studio
<div class="studio-steps">

**1. Data** — load a reasoning dataset and fix what would break an R1 fine-tune ·
**2. Train** — LoRA / QLoRA with live plots ·
**3. Chat** — the base and the fine-tune side by side
</div>"""

# Errors whose message is written for the user: shown as a toast, as is.
USER_ERRORS = (DatasetUnreadable, ModelNotFound, ValueError)


def user_errors(function):
    """Turn the core's user-facing errors into a gr.Error toast instead of a stack trace."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except USER_ERRORS as error:
            raise gr.Error(str(error), duration=None) from None

    return wrapper


def core_progress(progress: gr.Progress):
    """Adapt gr.Progress to the core's progress(fraction, description) callback."""
    return lambda fraction, description: progress(fraction, desc=description)
