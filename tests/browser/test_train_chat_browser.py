"""The Train and Chat tabs as a person uses them: train the demo with the defaults, watch the loss plot,
reload the page mid-run, stop and resume; then chat with the run, unfold its reasoning, batch compare, and
download the adapter and the report."""

import json
import re
import time
import zipfile

import pytest

from studio.config import SAMPLES_DIR
from tests.browser.conftest import SCREENSHOTS, open_tab, plot_points, save_screenshot, train_step, wait_until

# The demo preset runs 156 steps (12 epochs of 13); 50 keep the test short and leave room to reload and stop
# mid-run. Refreshing the README's screenshots trains the whole preset, so the chat shows the taught answer.
MAX_STEPS = 156 if SCREENSHOTS else 50
PROMPT = "Tom has 4 apples and buys 5 more. How many apples does he have now?"
COMPARE_PROMPTS = [{"prompt": "What is 3 + 4?", "reference": "7"}, {"prompt": "What is 9 - 2?", "reference": "7"},
                   {"prompt": "What is 6 + 2?", "reference": "8"}]


def status_text(page) -> str:
    return page.locator("#train-status").inner_text()


def test_train_watch_reload_stop_resume(page):
    open_tab(page, "train")
    page.locator("#train-estimate").get_by_text("fits").wait_for()  # the badge, next to Start
    page.locator("#train-max-steps input").fill(str(MAX_STEPS))
    page.locator("#train-start").click()

    wait_until(lambda: plot_points(page, "train-loss-plot") >= 2, 180, "the loss plot's first points")
    drawn = plot_points(page, "train-loss-plot")
    wait_until(lambda: plot_points(page, "train-loss-plot") > drawn, 60, "the loss plot to gain points")

    # A reload in the middle of the run re-attaches: status and progress keep updating.
    page.reload()
    open_tab(page, "train")
    wait_until(lambda: "running" in status_text(page), 30, "the running status after the reload")
    before = train_step(page)
    wait_until(lambda: train_step(page) > before, 60, "progress after the reload")
    assert page.locator("#train-stop").is_enabled()

    page.locator("#train-stop").click()
    wait_until(lambda: "stopped" in status_text(page), 60, "the run to stop")
    stopped_at = train_step(page)
    assert 0 < stopped_at < MAX_STEPS
    assert "Resume" in status_text(page)

    # Resume works on the selected row of the history table.
    run_name = re.search(r"demo-lora-[\d-]+", status_text(page)).group(0)
    page.locator("#train-history [role=gridcell]").filter(has_text=run_name).first.click()
    selected = page.locator("#train-selected-run textarea, #train-selected-run input").first
    wait_until(lambda: selected.input_value() == run_name, 10, "the selected run")
    page.locator("#train-resume").click()
    wait_until(lambda: "stopped" not in status_text(page), 30, "the run to resume")
    wait_until(lambda: train_step(page) > stopped_at or "completed" in status_text(page), 120,
               "the resumed run to go on from where it stopped")
    wait_until(lambda: "completed" in status_text(page), 240, "the resumed run to complete")
    assert train_step(page) == MAX_STEPS
    wait_until(lambda: plot_points(page, "train-loss-plot") == MAX_STEPS, 10, "one loss point per step")
    assert plot_points(page, "train-lr-plot") == MAX_STEPS
    page.locator("#train-history [role=gridcell]").filter(has_text="completed").first.wait_for()
    time.sleep(1)  # the progress bar's width animates
    save_screenshot(page, "train-tab.png")


@pytest.fixture(scope="module")
def demo_run():
    """The newest completed demo run (the one the test above made), or a short one made here when run alone."""
    from studio.train.job import default_config
    from studio.workspace import workspace

    for run in workspace().history():
        if run["state"] == "completed" and run["has_adapter"] and run["model"] == "demo":
            return run["name"]
    config = default_config(data=str(SAMPLES_DIR / "demo-train.jsonl"), model="demo", max_steps=8,
                            output=str(workspace().new_run_folder("demo", "lora")))
    job = workspace().start(config)
    assert job.wait(300)["state"] == "completed", job.status
    return job.folder.name


def pane_done(page, side: str) -> bool:
    stats = page.locator(f"#chat-{side}-stats").inner_text()
    return "tokens/s" in stats and "writing" not in stats


def unfold(thought) -> bool:
    """Click the folded reasoning's title; true once it shows its text (the last streamed update may redraw it)."""
    title = thought.locator(".title").first
    if "expanded" not in (title.get_attribute("class") or ""):
        title.click()
    time.sleep(0.5)
    return "expanded" in (title.get_attribute("class") or "") and len(thought.inner_text()) > len("Reasoning") + 20


def download(page, button: str, target):
    """One click on the download button `#button` (ready once a run is picked); the file saved as target."""
    link = page.locator(f"#{button}")
    wait_until(lambda: link.is_enabled(), 60, f"the {button} download to be ready")
    with page.expect_download() as info:
        link.click()
    info.value.save_as(target)
    return target


def test_chat_compare_and_downloads(page, demo_run, tmp_path):
    open_tab(page, "chat")
    page.locator("#chat-adapter input").click()
    page.get_by_role("option", name=re.compile(re.escape(demo_run))).click()
    # Greedy: a deterministic answer (the demo model is tiny; sampled at 0.6 its rare tokens can garble).
    page.locator("#chat-sampling-accordion > button.label-wrap, button:has-text('Sampling')").first.click()
    page.locator("#chat-greedy input[type=checkbox]").check()
    prompt = page.locator("#chat-prompt textarea")
    prompt.fill(PROMPT)
    prompt.press("Enter")  # keyboard submit
    for side in ("base", "lora"):
        wait_until(lambda: pane_done(page, side), 120, f"the {side} pane to answer")
        assert page.locator(f"#chat-{side} [data-testid=bot]").count() >= 1
    thought = page.locator("#chat-lora .thought-group").first
    # Open while it streams, folded once the answer is done: only its title shows.
    wait_until(lambda: thought.inner_text().strip() == "Reasoning", 20, "the finished reasoning to fold")
    wait_until(lambda: unfold(thought), 20, "the reasoning to unfold")
    assert "+" in thought.inner_text() or "=" in thought.inner_text()  # the demo reasons with sums
    save_screenshot(page, "chat-tab.png")

    # Batch compare on an uploaded prompts file.
    page.locator("#chat-compare-accordion > button.label-wrap").click()
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in COMPARE_PROMPTS), encoding="utf-8")
    page.locator("#chat-prompts-file input[type=file]").set_input_files(str(prompts))
    page.locator("#chat-prompts-file").get_by_text("prompts.jsonl").wait_for()
    page.locator("#chat-compare").click()
    cells = page.locator("#chat-compare-table [role=gridcell]")
    for row in COMPARE_PROMPTS:
        cells.filter(has_text=row["prompt"]).first.wait_for(timeout=120_000)
    summary = page.locator("#chat-compare-summary").inner_text()
    assert "BASE" in summary and "LORA" in summary and "3 prompts" in summary

    # Downloads: the adapter zip and the shareable report.
    page.locator("#chat-export-accordion > button.label-wrap").click()
    # The report is made again with the compare; its note says so once the file is ready.
    page.locator("#chat-report-note").get_by_text("batch compare of 3 prompts").wait_for()
    archive = download(page, "chat-zip", tmp_path / "adapter.zip")
    with zipfile.ZipFile(archive) as handle:
        assert any(name.endswith("adapter_config.json") for name in handle.namelist())

    html = download(page, "chat-report", tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<svg" in html and "What is 3 + 4?" in html
