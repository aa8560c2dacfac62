"""Running as a Hugging Face Space: the limits to state, ZeroGPU, and the optional login (no gradio here).

On ZeroGPU hardware a GPU exists only inside functions decorated with `spaces.GPU`, which the `spaces`
package runs in a worker process; a background thread of the main process never sees one. `gpu()` is
that decorator on a Space where the package is installed and a no-op everywhere else, so the same
handlers run on a laptop, a GPU box and a Space. Import this module before torch (app.py does): on
ZeroGPU `spaces` has to patch torch before CUDA is touched.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from studio import config as studio_config
from studio.config import on_space

_spaces = None
if on_space() and importlib.util.find_spec("spaces") is not None:
    try:
        import spaces as _spaces
    except Exception:  # a broken install must not stop the studio: run without ZeroGPU
        _spaces = None

def _seconds_from_env(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"The Space variable {name} must be a whole number of seconds, not {value!r}.") from None


# How long one ZeroGPU call may hold the GPU (seconds); the Space's visitors queue for shorter calls first.
TRAIN_GPU_SECONDS = _seconds_from_env("STUDIO_ZERO_GPU_TRAIN_S", 600)
CHAT_GPU_SECONDS = _seconds_from_env("STUDIO_ZERO_GPU_CHAT_S", 120)

# Upload caps: a public Space keeps visitors' files small; a local studio takes real datasets.
SPACE_MAX_UPLOAD_MB = 100
LOCAL_MAX_UPLOAD = "1gb"

# Where Hugging Face mounts a Space's persistent storage.
PERSISTENT_ROOT = Path("/data")


def on_zero_gpu() -> bool:
    """On a ZeroGPU Space with the `spaces` package: GPU work must run inside `gpu()` functions."""
    if _spaces is None:
        return False
    if os.environ.get("SPACES_ZERO_GPU"):
        return True
    try:
        return bool(_spaces.config.Config.zero_gpu)
    except AttributeError:
        return False


def gpu(duration: int = 60):
    """`spaces.GPU(duration=...)` on a Space that has the package, else a decorator that changes nothing."""
    if _spaces is not None:
        return _spaces.GPU(duration=duration)

    def unchanged(function):
        function.gpu_duration = duration  # a mark only: tests check which handlers would get a GPU
        return function

    return unchanged


def max_upload() -> str:
    """`Blocks.launch(max_file_size=...)`: capped on a Space."""
    return f"{SPACE_MAX_UPLOAD_MB}mb" if on_space() else LOCAL_MAX_UPLOAD


def persistent_storage() -> bool:
    """Whether the studio writes where a Space keeps files across restarts (/data)."""
    try:
        Path(studio_config.STUDIO_HOME).resolve().relative_to(PERSISTENT_ROOT)
    except ValueError:
        return False
    return PERSISTENT_ROOT.is_dir()


def hardware() -> str:
    if on_zero_gpu():
        return "zero-gpu"
    try:
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def space_notice() -> str | None:
    """Markdown stating what a Space cannot do that a local studio can; None when not on a Space."""
    if not on_space():
        return None
    kind = hardware()
    lines = [f"**Running as a Hugging Face Space** (`{os.environ.get('SPACE_ID')}`). What that changes:"]
    if kind == "cpu":
        lines.append("- **CPU Space:** only the demo model is practical here; the 7B/8B R1-Distill bases need a "
                     "GPU Space or your own machine.")
    elif kind == "zero-gpu":
        lines.append(f"- **ZeroGPU:** a GPU is lent per call — training runs in the page while it is open "
                     f"(up to {TRAIN_GPU_SECONDS // 60} minutes a run), each chat answer up to "
                     f"{CHAT_GPU_SECONDS} s.")
    if persistent_storage():
        lines.append(f"- **Runs are kept** in `{studio_config.STUDIO_HOME}` (persistent storage).")
    else:
        lines.append("- **Runs are lost when the Space restarts** (no persistent storage): download the adapter "
                     "zip from the Chat tab to keep a fine-tune, or attach persistent storage and set "
                     "`STUDIO_HOME=/data/studio`.")
    lines.append("- **One training run at a time** for every visitor: a second Start is refused until it ends.")
    lines.append(f"- **Uploads are capped at {SPACE_MAX_UPLOAD_MB} MB**, and typed file paths are off: upload "
                 "files or type a Hub dataset id.")
    return "\n".join(lines)


def path_allowed_on_space(path: str, upload_folder: str | Path) -> bool:
    """On a Space visitors may train on uploads, the samples and the studio's own files only (no typed paths)."""
    if not on_space():
        return True
    target = Path(path).expanduser().resolve()
    roots = (studio_config.SAMPLES_DIR, studio_config.STUDIO_HOME, Path(upload_folder))
    return any(target.is_relative_to(Path(root).expanduser().resolve()) for root in roots)


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """STUDIO_AUTH=user:password → (user, password); unset or blank → None; anything else → ValueError.

    The error never repeats the value, which holds a password.
    """
    if value is None or not value.strip():
        return None
    user, colon, password = value.strip().partition(":")
    if not colon:
        raise ValueError("STUDIO_AUTH must look like user:password (no ':' found). Unset it to run without a login.")
    if not user.strip() or any(char.isspace() for char in user):
        raise ValueError("STUDIO_AUTH must look like user:password: the user name before ':' is empty or has spaces.")
    if not password:
        raise ValueError("STUDIO_AUTH must look like user:password: the password after ':' is empty.")
    return user, password


def auth_from_env() -> tuple[str, str] | None:
    return parse_auth(os.environ.get("STUDIO_AUTH"))
