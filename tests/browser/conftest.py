"""Real-browser tests: Playwright driving Debian's Chromium (found on PATH; no browser download)."""

import os
import re
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Set STUDIO_SCREENSHOTS=assets/screenshots to refresh the README's pictures from a test run.
SCREENSHOTS = os.environ.get("STUDIO_SCREENSHOTS")


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM:
        pytest.skip("no Chromium on PATH (apt-get install chromium) — browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, studio_url, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(studio_url)
    yield page
    if getattr(request.node, "failed", False):
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture(autouse=True)
def no_run_left_going():
    """A failed test must not leave a training run holding the one-run lock for the tests after it."""
    yield
    from studio.workspace import workspace

    if workspace().stop():
        workspace().job.wait(120)


def open_tab(page, name: str) -> None:
    """Click a tab by its elem_id (data, train, chat) and wait for it to show."""
    page.locator(f"#tab-{name}-button").click()
    page.locator(f"#tab-{name}").wait_for(state="visible")


def wait_until(condition, timeout: float = 60, message: str = "condition", interval: float = 0.25):
    """Poll `condition()` until it returns something truthy; that value is returned."""
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


def train_step(page) -> int:
    """The step the Train tab's progress bar shows."""
    match = re.search(r"step ([\d,]+) /", page.locator("#train-progress").inner_text())
    return int(match.group(1).replace(",", "")) if match else -1


def plot_points(page, elem_id: str) -> int:
    """Points drawn by a gr.LinePlot (Vega SVG): the vertices of its line marks."""
    paths = page.locator(f"#{elem_id} g.mark-line path")
    return sum(len(re.findall(r"[ML]", paths.nth(i).get_attribute("d") or "")) for i in range(paths.count()))


def save_screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / name), full_page=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.failed = True
