"""Running as a Hugging Face Space or another shared server: the limits to state, ZeroGPU, visitors kept apart,
and the optional login (no gradio here).

On ZeroGPU hardware a GPU exists only inside functions decorated with `spaces.GPU`, which the `spaces`
package runs in a worker process; a background thread of the main process never sees one. `gpu()` is
that decorator on a Space where the package is installed and a no-op everywhere else, so the same
handlers run on a laptop, a GPU box and a Space. Import this module before torch (app.py does): on
ZeroGPU `spaces` has to patch torch before CUDA is touched.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import hmac
import importlib.util
import ipaddress
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
    """`Blocks.launch(max_file_size=...)`: capped on a Space and any other shared server."""
    return f"{SPACE_MAX_UPLOAD_MB}mb" if multiuser() else LOCAL_MAX_UPLOAD


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
    lines.append("- **One training run at a time** for every visitor: a second Start is refused until it ends "
                 "(without saying whose run is going).")
    lines.append(f"- **Uploads are capped at {SPACE_MAX_UPLOAD_MB} MB**, and typed file paths are off: upload "
                 "files or type a Hub dataset id.")
    hours = file_ttl_s() / 3600
    lines.append(f"- **Your files are yours:** what you upload, clean and export is handed to this page only and "
                 f"deleted after {hours:g} hour{'' if hours == 1 else 's'} (download what you want to keep). "
                 "Your training runs are yours too: only this page lists them, chats with them, resumes and stops "
                 "them, under names nobody else can guess; a reloaded page is a new visitor, so download the "
                 "adapter zip from the Chat tab to keep a fine-tune.")
    return "\n".join(lines)


def path_allowed_on_space(path: str, upload_folder: str | Path) -> bool:
    """On a Space or another shared server (`multiuser()`) visitors may train on uploads, the samples and the
    studio's own files only (no typed paths); a path with `..` in it is never taken there."""
    if not multiuser():
        return True
    if ".." in Path(str(path)).parts:
        return False
    target = Path(path).expanduser().resolve()
    roots = (studio_config.SAMPLES_DIR, studio_config.STUDIO_HOME, visitors_root(), Path(upload_folder))
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


# --------------------------------------------------------------------------------------------------
# Shared servers: what the studio keeps per visitor, and visitors kept apart


def multiuser() -> bool:
    """Visitors are strangers to each other: on a Space, or where STUDIO_MULTIUSER=1 says so (a shared box).

    Then each browser session gets a folder of its own for what it makes (cleaned sets, exports) and sees only the
    training runs it started (run_owner), typed server paths are off, model and adapter boxes read only Hub ids,
    `demo` and folders in the studio's home, and messages carry no server paths.
    """
    return on_space() or os.environ.get("STUDIO_MULTIUSER", "").strip().lower() in ("1", "true", "yes", "on")


def _whole_number_from_env(name: str, default: int, minimum: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ValueError(f"The variable {name} must be a whole number, at least {minimum}, not {value!r}.")
    return number


def session_ttl_s() -> int:
    """STUDIO_SESSION_TTL_S: a browser session idle this long lets its Data-tab report go (default 1 hour)."""
    return _whole_number_from_env("STUDIO_SESSION_TTL_S", studio_config.DEFAULT_SESSION_TTL_S, 1)


def max_reports() -> int:
    """STUDIO_MAX_REPORTS: Data-tab checks held in memory at once, every session together (default 4; sessions
    that checked the same bytes share one); past it the check used least recently goes first."""
    return _whole_number_from_env("STUDIO_MAX_REPORTS", studio_config.DEFAULT_MAX_REPORTS, 1)


def file_ttl_s() -> int:
    """STUDIO_FILE_TTL_S: uploads, downloads and session folders older than this are deleted (default 1 day,
    2 hours on a shared server)."""
    default = studio_config.DEFAULT_SHARED_FILE_TTL_S if multiuser() else studio_config.DEFAULT_FILE_TTL_S
    return _whole_number_from_env("STUDIO_FILE_TTL_S", default, 60)


def check_settings() -> None:
    """Read every STUDIO_* setting once, so a malformed one stops the start-up with its name (ValueError)."""
    session_ttl_s(), max_reports(), file_ttl_s()
    auth_from_env()


def delete_cache() -> tuple[int, int]:
    """`gr.Blocks(delete_cache=(every, age))`: uploads and files handed out for download are deleted past age."""
    age = file_ttl_s()
    return min(600, age), age


def visitors_root() -> Path:
    """Where the sessions' own folders go: STUDIO_HOME/visitors, unless STUDIO_HOME is outside both the working
    folder and the system temp folder (/data/studio on a Space), where Gradio would refuse to hand its files out
    for download: then under the temp folder. Never served as a folder: only the files a session is handed."""
    home = Path(studio_config.STUDIO_HOME).expanduser().resolve()
    movable = (Path.cwd().resolve(), Path(tempfile.gettempdir()).resolve())
    if any(home.is_relative_to(root) for root in movable):
        return Path(studio_config.VISITORS_DIR).expanduser().resolve()
    return Path(tempfile.gettempdir()).resolve() / studio_config.VISITORS_TEMP_NAME


def inside_studio(path: str | Path) -> bool:
    """Whether `path`, links followed, is inside the studio's home (or the sessions' folders)."""
    target = Path(path).expanduser().resolve()
    roots = (Path(studio_config.STUDIO_HOME).expanduser().resolve(), visitors_root())
    return any(target.is_relative_to(root) for root in roots)


# Hub ids as the Hub allows them: owner/name, each starting with a letter or digit, no `..` (nor `--`).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(:[\w.-]+)?$")
# File types the data readers take (studio.data.readers.FILE_SUFFIXES); a typed name ending so is a file.
DATASET_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def hub_id_only(source: str) -> bool:
    """Whether a typed dataset source is a Hub id and cannot be read as a file on this machine: owner/name[:split],
    no `..`, no file suffix (in any case: `.CSV` too), and nothing of that name next to the server."""
    source = (source or "").strip()
    if not _HUB_ID.match(source):
        return False
    repo = source.split(":", 1)[0]
    if ".." in repo or "--" in repo or any(part.endswith((".", "-")) for part in repo.split("/")):
        return False
    if repo.lower().endswith(DATASET_SUFFIXES):
        return False
    return not (Path(source).exists() or Path(repo).exists())


# A server path in a message: two or more absolute segments (not a Hub id, URL, `</think>` or a fraction).
_SERVER_PATH = re.compile(r"(?<![\w:/.<~-])~?(?:/[^/\s'\"`,;()\[\]{}<>|]+){2,}/?")


def scrub_paths(text: str) -> str:
    """The message with every server path cut to its last part (`/srv/x/runs/a/adapter` → `adapter`)."""
    return _SERVER_PATH.sub(lambda match: match.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def _libc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): freed memory is reused, just not handed back
        return None


_MALLOC_TRIM = _libc_trim() if os.name == "posix" else None


def release_memory() -> None:
    """After a report is dropped: hand the freed pages back to the system (glibc keeps them in its per-thread
    arenas otherwise, and each check runs in another worker thread). Reports hold no reference cycles (a test
    keeps it so), so dropping the last reference has freed them already; a full gc.collect() here would hold the
    interpreter lock for a quarter of a second on a busy server and stall every other visitor's check. ctypes
    lets the lock go during malloc_trim."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


_COLLECT_DELAY_S, _COLLECT_EVERY_S = 1.0, 10.0
_collect_lock = threading.Lock()
_collect_due: threading.Timer | None = None
_collected_at = 0.0


def collect_soon() -> None:
    """A closed session leaves Gradio's own page state and the page's tables behind, which do hold cycles: one
    full collection (and a trim) in the background a second later, at most one every _COLLECT_EVERY_S however
    many sessions close meanwhile — never one per closed tab on the request path."""
    global _collect_due

    def collect():
        global _collect_due, _collected_at
        gc.collect()
        release_memory()
        with _collect_lock:
            _collect_due, _collected_at = None, time.monotonic()

    with _collect_lock:
        if _collect_due is None:
            delay = max(_COLLECT_DELAY_S, _collected_at + _COLLECT_EVERY_S - time.monotonic())
            _collect_due = threading.Timer(delay, collect)
            _collect_due.daemon = True
            _collect_due.start()


def collection_pending() -> bool:
    with _collect_lock:
        return _collect_due is not None


@dataclass
class _Session:
    last_seen: float
    report: object | None = None
    report_used: float = 0.0
    let_go: str | None = None  # why the report was dropped: "idle", "memory" or "closed" (None: none, or replaced)
    folder: Path | None = None
    owner: str | None = None  # the token the session's training runs record as their owner (studio.runs)


class Visitors:
    """Per browser session, keyed by Gradio's session hash: the Data tab's report, in a cache bounded in count
    (max_reports) and time (session_ttl_s), and on a shared server the session's own folder.

    A report goes when its session checks another file (before the new one is read, so a failed check leaves
    none), when the tab closes (`forget`), when it is idle past the time to live, or when more reports than the
    cap are held (least recently used first; the cap counts distinct checks). Dropping one trims the heap.
    Folders outlive their session (a run may train on a cleaned set) until file_ttl_s after their last change.
    """

    FOLDER_SWEEP_S = 60.0

    def __init__(self, root: Callable[[], Path] = visitors_root, max_sessions: int = 10_000):
        self._lock = threading.RLock()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._root = root
        self._max_sessions = max_sessions
        self._folders_swept = 0.0

    # reports

    def report(self, key: str):
        """The session's report, or None (see `let_go` for why there is none)."""
        with self._lock:
            session = self._touch(key)
            if session.report is not None:
                session.report_used = time.monotonic()
            report = session.report
        self.sweep()
        return report

    def let_go(self, key: str) -> str | None:
        """Why the session's report was let go: "idle", "memory" or "closed" (its tab closed); None otherwise."""
        with self._lock:
            session = self._sessions.get(key)
            return session.let_go if session else None

    def keep_report(self, key: str, report) -> None:
        with self._lock:
            session = self._touch(key)
            session.report, session.report_used, session.let_go = report, time.monotonic(), None
        self.sweep()

    def drop_report(self, key: str) -> None:
        with self._lock:
            session = self._sessions.get(key)
            dropped = session is not None and session.report is not None
            if session is not None:
                session.report, session.let_go = None, None
        if dropped:
            release_memory()

    def forget(self, key: str) -> None:
        """The tab closed (or its connection broke): its report goes now; its folder stays until it ages out."""
        with self._lock:
            session = self._sessions.get(key)
            dropped = session is not None and session.report is not None
            if dropped:
                session.report, session.let_go = None, "closed"
        if dropped:
            release_memory()
        collect_soon()

    def reports_held(self) -> int:
        with self._lock:
            return sum(1 for session in self._sessions.values() if session.report is not None)

    # folders

    def folder(self, key: str) -> Path:
        """The session's own folder, created on first use, named by secrets.token_urlsafe (never guessable)."""
        with self._lock:
            session = self._touch(key)
            if session.folder is None:
                session.folder = self._root() / secrets.token_urlsafe(24)
            folder = session.folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    # runs

    def owner(self, key: str) -> str:
        """The session's owner token, made on first use (secrets.token_urlsafe: 192 bits, never a name): what the
        runs it starts record in their status (studio.runs), so that on a shared server it lists, chats with,
        resumes and stops only those. Never put on the page. A reloaded page is a new session with a new token."""
        with self._lock:
            session = self._touch(key)
            if session.owner is None:
                session.owner = secrets.token_urlsafe(24)
            return session.owner

    # upkeep

    def sweep(self) -> None:
        now = time.monotonic()
        dropped = 0
        with self._lock:
            ttl, cap = session_ttl_s(), max_reports()
            checks: dict[int, list[_Session]] = {}  # the sessions holding a view of each check, by check
            for session in self._sessions.values():
                if session.report is None:
                    continue
                if now - session.report_used > ttl:
                    session.report, session.let_go = None, "idle"
                    dropped += 1
                else:
                    checks.setdefault(id(_check_of(session.report)), []).append(session)
            # The cap counts checks, not sessions: views of one shared check cost next to nothing, so twenty
            # visitors of the same sample keep their reports; the check used least recently goes first, whole.
            by_use = sorted(checks.values(), key=lambda views: max(view.report_used for view in views))
            for views in by_use[:max(0, len(by_use) - cap)]:
                for session in views:
                    session.report, session.let_go = None, "memory"
                    dropped += 1
            forget_after = max(ttl, file_ttl_s())
            while self._sessions:
                key, oldest = next(iter(self._sessions.items()))
                if len(self._sessions) <= self._max_sessions and now - oldest.last_seen <= forget_after:
                    break
                self._sessions.pop(key)
                dropped += oldest.report is not None
            sweep_folders = now - self._folders_swept > self.FOLDER_SWEEP_S
            if sweep_folders:
                self._folders_swept = now
                live = {session.folder.name for session in self._sessions.values() if session.folder is not None}
        if dropped:
            release_memory()
        if sweep_folders:
            self._delete_old_folders(live)
            if multiuser():  # prepared tokens are shared by content there: they go by age, as uploads do
                from studio.data.prepared import prune

                prune(max_age_s=file_ttl_s())

    def _delete_old_folders(self, live: set[str]) -> None:
        root, age = self._root(), file_ttl_s()
        try:
            folders = list(root.iterdir())
        except OSError:
            return
        for folder in folders:
            try:
                old = time.time() - folder.stat().st_mtime > age
            except OSError:
                continue
            ours = folder.is_dir() and not folder.is_symlink() and len(folder.name) == 32
            if ours and folder.name not in live and old:
                shutil.rmtree(folder, ignore_errors=True)

    def _touch(self, key: str) -> _Session:
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _Session(last_seen=time.monotonic())
        session.last_seen = time.monotonic()
        self._sessions.move_to_end(key)
        return session


def _check_of(report):
    """The check a report shows: studio.data.check_cache hands each session a view of one shared check."""
    return getattr(report, "origin", None) or report


_VISITORS: Visitors | None = None


def visitors() -> Visitors:
    """The process-wide registry of browser sessions."""
    global _VISITORS
    if _VISITORS is None:
        _VISITORS = Visitors()
    return _VISITORS


def run_owner(session_key: str) -> str | None:
    """Whose runs a call may see: on a shared server (multiuser) the session's owner token, so each visitor lists,
    chats with, resumes and stops only the runs it started; None on the studio's own machine, where every page
    sees every run."""
    return visitors().owner(session_key) if multiuser() else None


# --------------------------------------------------------------------------------------------------
# The login (STUDIO_AUTH), with failed tries slowed per client

# The client a request comes from, set by the web layer for each request (studio.ui.app), read by the login.
REQUEST_CLIENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("studio_request_client", default=None)


def client_address(peer: str | None, forwarded_for: str | None) -> str:
    """Who is asking: the peer's address, or behind a proxy (on a Space, or a proxy on this machine) the last
    public address in X-Forwarded-For, the one the proxy itself added (a client can only prepend to it)."""
    peer = peer or "unknown"
    try:
        behind_proxy = on_space() or ipaddress.ip_address(peer).is_loopback
    except ValueError:
        behind_proxy = on_space()
    if behind_proxy and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            try:
                if not ipaddress.ip_address(hop).is_global:
                    continue  # the proxies' own hops
            except ValueError:
                pass
            return hop
    return peer


@dataclass
class _Tries:
    failures: int = 0
    next_try: float = 0.0  # monotonic time before which this client's next try waits
    waiting: int = 0
    lock: asyncio.Lock | None = None
    seen: float = 0.0


class LoginGuard:
    """The login check with failed tries slowed per client: after the n-th failure in a row the client's next
    try waits delay·2^(n-1) seconds (at most max_delay); tries from one client take turns, and past max_waiting
    waiting ones they are refused without being checked. A success clears the client's count."""

    def __init__(self, user: str, password: str, *, delay_s: float = studio_config.LOGIN_DELAY_S,
                 max_delay_s: float = studio_config.LOGIN_MAX_DELAY_S,
                 max_waiting: int = studio_config.LOGIN_MAX_WAITING, max_clients: int = 10_000):
        self._user, self._password = user.encode(), password.encode()
        self.delay_s, self.max_delay_s, self.max_waiting = delay_s, max_delay_s, max_waiting
        self._clients: OrderedDict[str, _Tries] = OrderedDict()
        self._max_clients = max_clients
        self.checked = 0  # tries whose password was compared (tests read it)

    def matches(self, user: str, password: str) -> bool:
        self.checked += 1
        same_user = hmac.compare_digest(user.encode(), self._user)
        return hmac.compare_digest(password.encode(), self._password) and same_user

    async def attempt(self, client: str, user: str, password: str) -> bool:
        tries = self._tries(client)
        if tries.waiting >= self.max_waiting:
            return False
        tries.waiting += 1
        try:
            async with tries.lock:
                wait = tries.next_try - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self.matches(user, password):
                    tries.failures, tries.next_try = 0, 0.0
                    return True
                tries.failures += 1
                tries.next_try = time.monotonic() + min(self.max_delay_s, self.delay_s * 2 ** (tries.failures - 1))
                return False
        finally:
            tries.waiting -= 1
            tries.seen = time.monotonic()

    def _tries(self, client: str) -> _Tries:
        tries = self._clients.get(client)
        if tries is None:
            while len(self._clients) >= self._max_clients:  # forget the client seen least recently
                oldest = next(iter(self._clients))
                if self._clients[oldest].waiting:
                    break
                self._clients.pop(oldest)
            tries = self._clients[client] = _Tries(lock=asyncio.Lock())
        self._clients.move_to_end(client)
        return tries
