"""Two visitors of a shared studio (STUDIO_MULTIUSER=1), in two browser contexts: A cleans a file, B cannot
download it by any URL B could know (A's server path, its folder, the old shared datasets folder), B's page
shows nothing of A's, and A's report is freed when A's tab closes."""

import re

import pytest

from studio import spaces
from studio.config import SAMPLES_DIR, STUDIO_HOME
from tests.browser.conftest import ARTIFACTS, open_tab, wait_until


@pytest.fixture(scope="module")
def shared_url():
    from studio.ui import app as studio_app

    patch = pytest.MonkeyPatch()
    patch.setenv("STUDIO_MULTIUSER", "1")  # read per call by the handlers: kept for the module
    patch.setenv("GRADIO_HEARTBEAT_INTERVAL", "1")  # a closed tab is noticed within seconds
    app = studio_app.build_app()
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                       **studio_app.launch_settings())
    yield app.local_url
    app.close()
    patch.undo()


@pytest.fixture
def visitors(browser, shared_url, request):
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
                for _ in range(2)]
    pages = []
    for context in contexts:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(shared_url)
        pages.append(page)
    yield pages
    if getattr(request.node, "failed", False):
        ARTIFACTS.mkdir(exist_ok=True)
        for name, page in zip("ab", pages):
            if not page.is_closed():
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{name}.png"), full_page=True)
    for context in contexts:
        context.close()


def test_b_cannot_download_what_a_cleaned(visitors, shared_url):
    a, b = visitors
    held = spaces.visitors().reports_held()
    a.locator("#data-upload input[type=file]").set_input_files(str(SAMPLES_DIR / "broken-sample.jsonl"))
    a.locator("#data-summary").get_by_text("missing_think").wait_for()
    a.locator("#data-apply").click()
    a.locator("#data-fix-status").get_by_text("Cleaned").wait_for()
    with a.expect_download() as download_info:
        a.locator("#data-download").click()
    link = download_info.value.url
    assert a.context.request.get(link).ok  # A downloads its own file

    open_tab(a, "train")
    box = a.locator("#train-data textarea, #train-data input").first
    server_path = wait_until(lambda: "-clean-" in box.input_value() and box.input_value(), 10, "the cleaned set")
    folder = spaces.visitors_root()
    assert server_path.startswith(str(folder)) and len(server_path[len(str(folder)) + 1:].split("/")[0]) == 32
    # The link A got is Gradio's per-file cache, under a salted hash: it does not name A's folder.
    assert server_path not in link and re.search(r"/[0-9a-f]{64}/", link)

    name = server_path.rsplit("/", 1)[1]
    for guess in (server_path, server_path.rsplit("/", 1)[0], str(folder), f"{STUDIO_HOME}/datasets/{name}"):
        response = b.context.request.get(f"{shared_url}gradio_api/file={guess}")
        assert response.status == 403, (guess, response.status)

    # B's page shows nothing of A's: no report, no cleaned set handed to its Train tab.
    assert "No dataset yet" in b.locator("#data-overview").inner_text()
    open_tab(b, "train")
    assert "-clean-" not in b.locator("#train-data textarea, #train-data input").first.input_value()

    # A's report is freed when A's tab closes.
    assert spaces.visitors().reports_held() >= held + 1
    a.context.close()
    wait_until(lambda: spaces.visitors().reports_held() <= held, 30, "A's report to be freed")
