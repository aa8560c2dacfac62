"""Many visitors on one studio: memory given back between sessions, visitors kept apart on a shared server
(STUDIO_MULTIUSER=1 or a Space), typed paths and model boxes held in, failed logins slowed, a failed check
leaving no old report, and an unreachable Hub said within seconds."""

import asyncio
import json
import os
import re
import time
import weakref
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import pytest
from gradio_client import Client, handle_file

from studio import spaces
from studio.config import SAMPLES_DIR, STUDIO_HOME
from studio.models import SHARED_MODEL_RULE, ModelNotFound, check_model_available, resolve_model, typed_name
from tests.helpers import run_async, train_settings, wait_for

BROKEN = SAMPLES_DIR / "broken-sample.jsonl"
DEMO_TRAIN = str(SAMPLES_DIR / "demo-train.jsonl")
USER, PASSWORD = "ana", "secret"
NO_SETTINGS = ["", "", "", "", "", ""]  # layout and the five mapping fields: detected


def check_args(measure=False):
    return ["demo", 4096, measure, *NO_SETTINGS]


def rss_mib() -> float:
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024


class Payload:
    """Stands in for a report (the real ones hold no reference cycles: see the test below)."""

    def __init__(self, origin=None):
        self.origin = origin
        self.payload = bytearray(1024)


# --------------------------------------------------------------------------------------------------
# The report cache: bounded in count and time, freed when a tab closes


@pytest.fixture
def registry(tmp_path):
    return spaces.Visitors(root=lambda: tmp_path / "visitors")


def test_reports_past_the_cap_are_let_go_oldest_first(registry, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_REPORTS", "2")
    refs = []
    for n in range(6):
        report = Payload()
        refs.append(weakref.ref(report))
        registry.keep_report(f"s{n}", report)
        del report
    assert registry.reports_held() == 2
    assert [ref() is not None for ref in refs] == [False] * 4 + [True] * 2  # freed at once
    assert registry.report("s0") is None and registry.let_go("s0") == "memory"
    assert registry.report("s5") is not None and registry.let_go("s5") is None


def test_the_cap_counts_checks_not_the_sessions_sharing_one(registry, monkeypatch):
    """Twenty visitors of one sample hold views of one check (studio.data.check_cache): all keep their report."""
    monkeypatch.setenv("STUDIO_MAX_REPORTS", "2")
    shared, other, newest = Payload(), Payload(), Payload()
    for n in range(20):
        registry.keep_report(f"view{n}", Payload(origin=shared))
    registry.keep_report("other", other)
    assert registry.reports_held() == 21
    registry.keep_report("view0", Payload(origin=shared))  # the shared check is now the one used last
    registry.keep_report("newest", newest)  # a third check: the one used least recently ("other") goes
    assert registry.let_go("other") == "memory" and registry.reports_held() == 21
    registry.keep_report("newer", Payload())  # now the shared check is the oldest: all its views go together
    assert registry.reports_held() == 2
    assert all(registry.let_go(f"view{n}") == "memory" for n in range(20))


def test_real_reports_hold_no_reference_cycles_so_dropping_one_frees_it_at_once(tmp_path):
    """release_memory() runs no gc.collect() (it would stall every visitor): that needs reports without cycles."""
    import gc

    from studio.data import check_cache
    from studio.data.validate import validate

    copy = tmp_path / "broken.jsonl"
    copy.write_bytes(BROKEN.read_bytes())
    gc.disable()
    try:
        report = validate(str(copy), model="demo", max_length=64, lengths=True)
        viewed = check_cache.CheckCache().validate(str(copy), model="demo", max_length=64, lengths=True)
        refs = [weakref.ref(report), weakref.ref(report.dataset), weakref.ref(viewed), weakref.ref(viewed.origin)]
        del report, viewed
        assert [ref() for ref in refs] == [None] * 4
    finally:
        gc.enable()


def test_an_idle_report_is_let_go_after_its_time_to_live(registry, monkeypatch):
    monkeypatch.setenv("STUDIO_SESSION_TTL_S", "1")
    report = Payload()
    ref = weakref.ref(report)
    registry.keep_report("idle", report)
    del report
    time.sleep(1.3)
    registry.keep_report("busy", Payload())  # any use sweeps
    assert ref() is None and registry.let_go("idle") == "idle" and registry.reports_held() == 1


def test_a_closed_tab_frees_its_report_and_a_new_check_replaces_the_old(registry):
    first = Payload()
    ref = weakref.ref(first)
    registry.keep_report("tab", first)
    del first
    registry.drop_report("tab")  # a check starts: the old report goes before the new file is read
    assert ref() is None and registry.let_go("tab") is None
    second = Payload()
    ref = weakref.ref(second)
    registry.keep_report("tab", second)
    del second
    registry.forget("tab")
    assert ref() is None and registry.let_go("tab") == "closed" and registry.reports_held() == 0


def test_each_session_gets_its_own_unguessable_folder(registry, monkeypatch):
    a, b = registry.folder("a"), registry.folder("b")
    assert a != b and a.parent == b.parent and registry.folder("a") == a
    assert len(a.name) == 32 and re.fullmatch(r"[\w-]{32}", a.name)  # secrets.token_urlsafe(24): 192 bits
    assert a.stat().st_mode & 0o077 == 0
    # Folders outlive their session until they are older than STUDIO_FILE_TTL_S.
    monkeypatch.setenv("STUDIO_FILE_TTL_S", "60")
    monkeypatch.setattr(registry, "FOLDER_SWEEP_S", 0.0)
    registry.forget("a")
    registry._sessions.pop("a")
    os.utime(a, (time.time() - 120, time.time() - 120))
    registry.sweep()
    assert not a.exists() and b.exists()


def test_each_session_gets_its_own_unguessable_owner_token(registry, monkeypatch):
    a = registry.owner("a")
    assert registry.owner("a") == a and registry.owner("b") != a
    assert re.fullmatch(r"[\w-]{32}", a)  # secrets.token_urlsafe(24): what a run records, never a name
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("STUDIO_MULTIUSER", raising=False)
    assert spaces.run_owner("a") is None  # the studio's own machine: every page sees every run
    monkeypatch.setenv("STUDIO_MULTIUSER", "1")
    assert spaces.run_owner("a") == spaces.visitors().owner("a")


def test_malformed_settings_name_themselves(monkeypatch):
    for variable in ("STUDIO_SESSION_TTL_S", "STUDIO_MAX_REPORTS", "STUDIO_FILE_TTL_S"):
        monkeypatch.setenv(variable, "soon")
        with pytest.raises(ValueError, match=variable):
            spaces.check_settings()
        monkeypatch.delenv(variable)
    spaces.check_settings()


def test_memory_is_given_back_between_sessions(studio_url, tmp_path, monkeypatch):
    """Twenty sessions, one after another, each check a 50 MB file and close their tab: every report is freed,
    and from the second session on the process grows by Gradio's own page state (~3-4 MiB a session, bounded by
    state_session_capacity; measured 63-74 MiB over 19 sessions) and one report's worth at most (32 MiB since
    checks stream: the rows are on disk; 91-102 MiB before). Unfreed reports would grow it by 19 reports, or by
    3 with the cap of 4."""
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.5")  # a closed client is noticed within a second
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        for n in range(24_000):
            steps = "Let me add the numbers carefully, step by step. " * 40
            think = "" if n % 10 == 0 else f"<think>\n{steps}\n</think>\n\n"  # one row in ten: missing_think
            turns = [{"role": "user", "content": f"What is {n} + {n}? " * 10},
                     {"role": "assistant", "content": think + f"The answer is {2 * n}."}]
            out.write(json.dumps({"conversation": turns}) + "\n")
    refs, sizes = [], []
    for n in range(20):
        client = Client(studio_url, verbose=False)
        before = rss_mib()
        client.predict(str(path), *check_args(), api_name="/check_source")
        sizes.append(rss_mib() - before)
        refs.append(weakref.ref(spaces.visitors().report(client.session_hash)))
        client.close()
        wait_for(lambda: refs[-1]() is None, message="the closed session's report to be freed")
        if n == 0:
            after_first = rss_mib()
    wait_for(lambda: not spaces.collection_pending(), message="the collection after the last closed tab")
    grown = rss_mib() - after_first
    one_report = max(max(sizes), 40)  # what one check grew the process by at most (a freed one's pages get reused)
    print(f"\none report: +{sizes[0]:.0f} MiB; 19 sessions more: +{grown:.0f} MiB; reports held "
          f"{spaces.visitors().reports_held()}")
    assert not [ref for ref in refs if ref() is not None]
    page_state = 4 * 19  # MiB: Gradio's, for the 19 sessions after the first
    assert grown < page_state + one_report, (grown, sizes)


def test_sessions_left_open_hold_at_most_the_cap(studio_url, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_REPORTS", "2")
    clients, refs = [], []
    for n in range(5):
        own = tmp_path / f"visitor-{n}.jsonl"  # other bytes each: five checks (the same bytes would share one)
        own.write_text(BROKEN.read_text() + json.dumps({"prompt": f"row {n}", "response": "no"}) + "\n")
        client = Client(studio_url, verbose=False)
        client.predict(str(own), *check_args(), api_name="/check_source")
        refs.append(weakref.ref(spaces.visitors().report(client.session_hash)))
        clients.append(client)
    assert [ref() is not None for ref in refs] == [False, False, False, True, True]
    with pytest.raises(Exception, match="let go to free memory"):
        clients[0].predict(["drop_duplicates"], "messages", 4096, api_name="/apply_fixes")
    clients[-1].predict(["drop_duplicates"], "messages", 4096, api_name="/apply_fixes")  # the newest kept its own
    for client in clients:
        client.close()


def test_a_failed_check_leaves_no_old_report(client, tmp_path):
    client.predict(handle_file(str(BROKEN)), *check_args(), api_name="/check_file")
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(Exception, match="not valid JSON"):
        client.predict(handle_file(str(bad)), *check_args(), api_name="/check_file")
    with pytest.raises(Exception, match="Check a dataset first"):
        client.predict(["drop_duplicates"], "messages", 4096, api_name="/apply_fixes")
    with pytest.raises(Exception, match="Check a dataset first"):
        client.predict(2, api_name="/preview_row")


# --------------------------------------------------------------------------------------------------
# Typed names: `..` never, Hub ids only on a shared server, no existence oracle


@pytest.fixture
def shared(monkeypatch):
    monkeypatch.setenv("STUDIO_MULTIUSER", "1")
    assert spaces.multiuser()


def test_multiuser_is_on_for_a_space_or_the_flag(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("STUDIO_MULTIUSER", raising=False)
    assert not spaces.multiuser()
    monkeypatch.setenv("STUDIO_MULTIUSER", "1")
    assert spaces.multiuser()
    monkeypatch.delenv("STUDIO_MULTIUSER")
    monkeypatch.setenv("SPACE_ID", "someone/r1-lora-studio")
    assert spaces.multiuser()


@pytest.mark.parametrize("source, taken", [
    ("open-r1/OpenR1-Math-220k", True), ("simplescaling/s1K-1.1:train", True), ("a/b.c", True),
    ("../secret.CSV", False), ("../secret.csv", False), ("owner/data.CSV", False), ("owner/data.Parquet", False),
    ("./x/y", False), ("owner/..", False), ("a..b/c", False), ("/etc/passwd", False), ("owner", False),
    ("assets/samples", False),  # a folder next to the server, shaped like a Hub id
])
def test_what_a_shared_server_takes_as_a_hub_dataset_id(source, taken):
    assert spaces.hub_id_only(source) is taken


def test_a_typed_path_with_dotdot_is_refused_on_the_studio_s_own_machine_too(client):
    for source in ("../secret.CSV", "assets/../../secret.jsonl"):
        with pytest.raises(Exception, match="`..` step are not read"):
            client.predict(source, *check_args(), api_name="/check_source")
    with pytest.raises(Exception, match="never reads"):
        client.predict(handle_file(str(BROKEN)), "../models/qwen", 4096, True, *NO_SETTINGS, api_name="/check_file")


def test_a_name_with_dotdot_is_never_read():
    for name in ("../models/qwen", "runs/../../etc", "..\\secret"):
        with pytest.raises(ModelNotFound, match="never reads"):
            typed_name(name)
    assert typed_name(" deepseek-ai/DeepSeek-R1-Distill-Qwen-7B ") == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def test_a_shared_server_reads_models_only_from_the_hub_demo_or_its_home(shared, studio_home, tmp_path):
    outside = tmp_path / "model"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    answers = set()
    for name in (str(outside), str(tmp_path / "missing"), "/etc", "~/.cache", "assets/demo-model", "./assets"):
        with pytest.raises(ModelNotFound) as error:
            resolve_model(name)
        answers.add(str(error.value))
    assert answers == {SHARED_MODEL_RULE}  # the same words whether the folder exists or not
    inside = studio_home / "models" / "mine"
    inside.mkdir(parents=True, exist_ok=True)
    (inside / "config.json").write_text("{}")
    assert resolve_model(str(inside)) == str(inside)
    assert resolve_model("demo").endswith("demo-model")
    assert resolve_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B") == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def test_a_shared_server_reads_adapters_only_from_its_home(shared, tmp_path, studio_home):
    from studio.chat.generate import resolve_adapter

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    answers = set()
    for name in (adapter, tmp_path / "missing", "/etc", studio_home / "runs" / ".." / ".." / "x"):
        with pytest.raises(ValueError) as error:
            resolve_adapter(name)
        answers.add(str(error.value))
    assert len(answers) == 1 and "shared studio" in answers.pop()


def test_adapter_zip_takes_suffixes_in_any_case_and_no_links(tmp_path):
    from studio.chat.export import adapter_zip

    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"0")
    (adapter / "tokenizer_config.JSON").write_text("{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    (adapter / "notes.txt").symlink_to(secret)
    names = zipfile.ZipFile(adapter_zip(adapter, tmp_path / "out")).namelist()
    assert sorted(Path(name).name for name in names) == ["README.md", "adapter_config.json",  # its model card
                                                         "adapter_model.safetensors", "tokenizer_config.JSON"]


def test_toasts_carry_no_server_paths_on_a_shared_server(monkeypatch):
    from studio.ui.layout import as_toast

    message = (f"{STUDIO_HOME}/runs/demo-lora-1/adapter holds no LoRA adapter; see /tmp/gradio/abc/mine.jsonl: "
               "the Hub (https://huggingface.co/deepseek-ai/x) says deepseek-ai/x needs </think> in 1/2 rows.")
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("STUDIO_MULTIUSER", raising=False)
    assert as_toast(ValueError(message)).message == message  # on the studio's own machine paths help
    monkeypatch.setenv("STUDIO_MULTIUSER", "1")
    scrubbed = as_toast(ValueError(message)).message
    assert str(STUDIO_HOME) not in scrubbed and "/tmp/gradio" not in scrubbed
    assert scrubbed.startswith("adapter holds no LoRA adapter; see mine.jsonl:")
    assert "https://huggingface.co/deepseek-ai/x" in scrubbed and "deepseek-ai/x needs </think> in 1/2" in scrubbed
    assert "/etc" not in as_toast(gr.Error("cannot read /etc/shadow/x")).message


# --------------------------------------------------------------------------------------------------
# The Hub, unreachable: said within seconds


def test_an_unreachable_hub_model_fails_within_3_s(monkeypatch):
    from huggingface_hub import HfApi

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(HfApi, "model_info", lambda self, *args, **kwargs: time.sleep(30))  # DNS that hangs
    started = time.time()
    with pytest.raises(ModelNotFound, match="cannot be reached") as error:
        check_model_available("someone/not-cached-model")
    assert time.time() - started < 3.5
    assert "did not answer within 3 s" in str(error.value) and "demo" in str(error.value)


def test_a_hub_model_with_no_network_fails_at_once(monkeypatch):
    """The real thing on this machine: with no network (or with it, a model the Hub does not have) the tokenizer
    load says so in seconds, not after the download's five retries (about 50 s)."""
    from studio.models import load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    started = time.time()
    with pytest.raises(ModelNotFound, match="cannot be reached|has no model"):
        load_tokenizer("studio-tests/no-such-model")
    assert time.time() - started < 5


# --------------------------------------------------------------------------------------------------
# Failed logins slowed per client


def test_client_address_trusts_only_the_proxy_s_own_hop(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert spaces.client_address("8.8.8.8", "1.2.3.4") == "8.8.8.8"  # no proxy: the header is the client's own
    assert spaces.client_address("192.168.1.9", "1.2.3.4") == "192.168.1.9"
    assert spaces.client_address("127.0.0.1", "1.2.3.4, 9.9.9.9") == "9.9.9.9"  # a local proxy appended 9.9.9.9
    assert spaces.client_address("127.0.0.1", "9.9.9.9, 10.0.0.2") == "9.9.9.9"  # the proxies' own hops skipped
    assert spaces.client_address("127.0.0.1", None) == "127.0.0.1"
    monkeypatch.setenv("SPACE_ID", "someone/r1-lora-studio")
    assert spaces.client_address("10.16.3.80", "5.6.7.8") == "5.6.7.8"  # the Space's proxy


def test_failed_logins_wait_longer_each_time_per_client():
    guard = spaces.LoginGuard(USER, PASSWORD, delay_s=0.1, max_delay_s=0.4, max_waiting=4)

    async def tries():
        timings = []
        for _ in range(5):
            started = time.monotonic()
            assert await guard.attempt("attacker", USER, "guess") is False
            timings.append(time.monotonic() - started)
        started = time.monotonic()
        assert await guard.attempt("someone-else", USER, PASSWORD) is True  # another client is not slowed
        other = time.monotonic() - started
        burst = await asyncio.gather(*(guard.attempt("attacker", USER, "guess") for _ in range(30)))
        return timings, other, burst

    checked_before = guard.checked
    timings, other, burst = run_async(tries())
    assert timings[0] < 0.05 and 0.09 < timings[1] < 0.3 and 0.19 < timings[2] < 0.4 and 0.39 < timings[4] < 0.6
    assert other < 0.05
    assert not any(burst)
    assert guard.checked - checked_before - 6 <= 4  # of 30 tries at once, the waiting ones only were checked


# --------------------------------------------------------------------------------------------------
# A shared server with a login: two visitors, raw HTTP


@pytest.fixture(scope="module")
def shared_studio():
    """The studio as a shared server (STUDIO_MULTIUSER=1) behind STUDIO_AUTH, on a free port of this process."""
    from studio.ui import app as studio_app

    patch = pytest.MonkeyPatch()
    patch.setenv("STUDIO_MULTIUSER", "1")
    patch.setenv("STUDIO_AUTH", f"{USER}:{PASSWORD}")
    app = studio_app.build_app()
    settings = studio_app.launch_settings()
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **settings)
    patch.delenv("STUDIO_AUTH")  # the login is set; the handlers read STUDIO_MULTIUSER per call (the `shared` fixture)
    patch.delenv("STUDIO_MULTIUSER")
    yield app.local_url, settings["auth"].guard
    app.close()
    patch.undo()


def visitor(url) -> Client:
    return Client(url, auth=(USER, PASSWORD), verbose=False, download_files=False)


def logged_in(url) -> httpx.Client:
    http = httpx.Client(base_url=url, timeout=30)
    assert http.post("login", data={"username": USER, "password": PASSWORD}).status_code == 200
    return http


def file_url(path) -> str:
    return f"gradio_api/file={path}"


def test_every_route_needs_the_login(shared_studio):
    url, _ = shared_studio
    anonymous = httpx.Client(base_url=url, timeout=30)
    for route in ("config", "gradio_api/info", file_url(BROKEN)):
        assert anonymous.get(route).status_code in (401, 403), route
    assert logged_in(url).get(file_url(BROKEN)).status_code == 200  # the samples are served


def test_visitor_b_cannot_fetch_visitor_a_s_cleaned_set(shared_studio, shared):
    url, _ = shared_studio
    a, b = visitor(url), visitor(url)
    a.predict(handle_file(str(BROKEN)), *check_args(), api_name="/check_file")
    download, status = a.predict(["drop_duplicates"], "messages", 4096, api_name="/apply_fixes")
    name = re.search(r"Saved as `([^`]+)`", status).group(1)
    [cleaned] = [path for path in spaces.visitors_root().glob(f"*/{name}")]
    folder = cleaned.parent
    assert folder == spaces.visitors().folder(a.session_hash) and len(folder.name) == 32
    # A's download comes from Gradio's cache, under a salted content hash: not A's path, not guessable.
    link = download["value"]["url"] if "value" in download else download["url"]
    assert str(folder) not in link and re.search(r"/[0-9a-f]{64}/", link)
    http_a, http_b = logged_in(url), logged_in(url)
    assert http_a.get(link[link.index("gradio_api/"):]).status_code == 200
    guesses = [cleaned, folder, spaces.visitors_root(), STUDIO_HOME / "datasets" / name,
               STUDIO_HOME / "datasets", STUDIO_HOME / "runs", STUDIO_HOME]
    for guess in guesses:
        assert http_b.get(file_url(guess)).status_code == 403, guess
        assert http_a.get(file_url(guess)).status_code == 403, guess  # no folder is served, not even to A
    # B's own session has no report of A's to clean or read.
    with pytest.raises(Exception, match="Check a dataset first"):
        b.predict(["drop_duplicates"], "messages", 4096, api_name="/apply_fixes")
    with pytest.raises(Exception, match="Check a dataset first"):
        b.predict(2, api_name="/preview_row")
    for client in (a, b):
        client.close()


def test_typed_paths_are_off_and_say_nothing_of_the_server(shared_studio, shared, tmp_path):
    url, _ = shared_studio
    client = visitor(url)

    def refusal(source):
        with pytest.raises(Exception) as error:
            client.predict(source, *check_args(), api_name="/check_source")
        return str(error.value)

    for source in ("../secret.CSV", "../../etc/passwd", "/etc/passwd", "assets/samples/broken-sample.JSONL"):
        assert "Hub dataset id" in refusal(source), source
    # The same words whether the file exists or not: no existence oracle.
    assert refusal(str(BROKEN)) == refusal(str(tmp_path / "missing.jsonl"))
    assert refusal("assets/samples/broken-sample.JSONL") == refusal("assets/samples/no-such.CSV")
    assert refusal("assets/samples") == refusal("assets/nothing-here.jsonl")
    # The tokenizer box: the same words for a folder that exists and one that does not, no server path.
    answers = set()
    for model in (str(SAMPLES_DIR), "/etc", "/no/such/folder", str(tmp_path)):
        with pytest.raises(Exception) as error:
            client.predict(handle_file(str(BROKEN)), model, 4096, True, *NO_SETTINGS, api_name="/check_file")
        answers.add(str(error.value))
    assert len(answers) == 1 and "shared studio" in answers.pop()
    # The Chat tab's export: no adapter zip of a folder outside the studio's home.
    outside = tmp_path / "adapter"
    outside.mkdir()
    (outside / "adapter_config.json").write_text("{}")
    with pytest.raises(Exception, match="shared studio") as error:
        client.predict(str(outside), api_name="/adapter_zip")
    assert str(tmp_path) not in str(error.value)
    client.close()


def test_the_train_badge_reads_no_typed_path_on_a_shared_server(shared_studio, shared, tmp_path):
    url, _ = shared_studio
    client = visitor(url)
    (tmp_path / "real.jsonl").write_text("{}\n")
    answers = {client.predict(path, *train_settings(), api_name="/estimate")
               for path in ("/etc/passwd", str(tmp_path / "real.jsonl"), str(tmp_path / "missing.jsonl"), str(tmp_path))}
    assert len(answers) == 1  # the same words whether the path exists or not, a file or a folder
    answer = answers.pop()
    assert "typed file paths are off" in answer and str(tmp_path) not in answer
    with pytest.raises(Exception, match="typed file paths are off"):
        client.predict(str(tmp_path / "real.jsonl"), *train_settings(), api_name="/start_training")
    client.close()


def as_session(client):
    """The gr.Request of `client`'s session, as far as the handlers read it: for those the API does not expose."""
    return SimpleNamespace(session_hash=client.session_hash)


def training_status(client):
    return client.predict(api_name="/training_status")


def test_each_visitor_sees_chats_with_resumes_and_stops_only_its_own_runs(shared_studio, shared, studio_home):
    from studio.runs import RunFolder
    from studio.ui import chat_tab
    from studio.workspace import BUSY_FOR_VISITORS, SHARED_ADAPTER_RULE, workspace

    url, _ = shared_studio
    a, b = visitor(url), visitor(url)
    runs = studio_home / "runs"
    a.predict(DEMO_TRAIN, *train_settings(max_steps=300), api_name="/start_training")
    job = workspace().job
    run, name = RunFolder(job.folder.path), job.folder.name
    assert re.fullmatch(r"demo-lora-\d{8}-\d{6}-[\w-]{16}", name)  # a random part nobody can guess
    wait_for(lambda: run.read_status().get("owner"), message="the run's status")
    assert run.read_status()["owner"] == spaces.visitors().owner(a.session_hash)  # a token, not a name
    assert spaces.visitors().owner(a.session_hash) not in (run.path / "config.json").read_text()
    wait_for(lambda: "step 0 " not in training_status(a)[1], timeout=120, message="A's first step")
    seen = training_status(a)
    assert name in seen[0] and [row[0] for row in seen[5]["data"]] == [name]  # A follows its run live

    # B sees nothing of it: not in its status, plots or history, not in its chat list.
    seen = training_status(b)
    assert name not in str(seen) and str(studio_home) not in str(seen)
    assert "A training run is going" in seen[0]
    update, empty = chat_tab.adapter_choices(None, as_session(b))
    assert update["choices"] == [] and empty["visible"] is True
    # B's Start is refused without a name or a path, and makes no run.
    before = sorted(path.name for path in runs.iterdir())
    with pytest.raises(Exception) as refused:
        b.predict(DEMO_TRAIN, *train_settings(), api_name="/start_training")
    assert str(refused.value).strip() == BUSY_FOR_VISITORS
    assert sorted(path.name for path in runs.iterdir()) == before
    # B's Stop does not stop A's run; B can neither resume it nor chat with it, by name or by path.
    b.predict(api_name="/stop_training")
    time.sleep(1.0)
    assert job.running and not job.stop_requested
    with pytest.raises(Exception, match="No run named"):
        b.predict(name, api_name="/resume_training")
    for typed in (name, str(run.path), str(run.adapter_dir)):
        with pytest.raises(Exception) as error:
            b.predict(typed, api_name="/adapter_zip")
        assert str(error.value).strip() == SHARED_ADAPTER_RULE, typed
    with pytest.raises(Exception, match="A training run is using the device. Chat when it ends.$"):
        b.predict("Hi", [], [], name, "", 16, 0.6, 0.95, 0, True, api_name="/chat")  # unnamed to B

    a.predict(api_name="/stop_training")  # A's own Stop does stop it
    wait_for(lambda: "stopped" in training_status(a)[0], timeout=180, message="A's run to stop")
    with pytest.raises(Exception) as error:
        b.predict("Hi", [], [], name, "", 16, 0.6, 0.95, 0, True, api_name="/chat")
    assert str(error.value).strip() == SHARED_ADAPTER_RULE
    assert str(run.path) not in training_status(a)[0]  # its status shows no server path either
    update, _ = chat_tab.adapter_choices(None, as_session(a))
    assert [value for _, value in update["choices"]] == [name]  # names, not server paths
    download = a.predict(name, api_name="/adapter_zip")
    link = download["value"]["url"] if "value" in download else download["url"]
    assert str(studio_home) not in link and name not in link.split("/")[-2]
    http_a, http_b = logged_in(url), logged_in(url)
    assert http_a.get(link[link.index("gradio_api/"):]).status_code == 200
    archive = spaces.visitors().folder(a.session_hash) / "exports" / f"{name}-adapter.zip"
    assert archive.exists()
    guesses = [archive, archive.parent, run.adapter_dir / "adapter_model.safetensors", run.adapter_dir, run.path,
               runs, runs / "demo-lora-adapter.zip"]
    for guess in guesses:
        assert http_b.get(file_url(guess)).status_code == 403, guess
    assert name not in str(training_status(b))
    for client in (a, b):
        client.close()


def test_wrong_logins_are_slowed_per_client_over_http(shared_studio):
    url, guard = shared_studio
    attacker = {"X-Forwarded-For": "8.8.4.4"}  # behind a proxy on this machine: the proxy's hop names the client

    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            responses = await asyncio.gather(*(http.post("login", data={"username": USER, "password": f"guess{n}"},
                                                         headers=attacker) for n in range(30)))
        return [response.status_code for response in responses]

    checked = guard.checked
    started = time.time()
    codes = run_async(burst())
    elapsed = time.time() - started
    assert all(code >= 400 for code in codes)
    assert guard.checked - checked <= 1 + spaces.studio_config.LOGIN_MAX_WAITING  # the rest refused unchecked
    assert elapsed > 1.0  # the checked ones waited 1, 2, 4… s in turn
    started = time.time()
    assert logged_in(url)  # another client (no proxy hop) signs in at once
    assert time.time() - started < 1.0
