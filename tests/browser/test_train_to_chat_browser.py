"""From a finished run on the Train tab to the Chat tab with that run picked, as a person clicks it."""

import re

from tests.browser.conftest import open_tab, wait_until


def test_a_finished_run_opens_in_the_chat_tab(page):
    open_tab(page, "train")
    loss_plot = page.locator("#train-loss-plot")
    status = page.locator("#train-status")
    # The page opens on the newest run already on disk (another test's, perhaps completed): wait for this one's.
    earlier = set(re.findall(r"demo-lora-[\d-]+", status.inner_text()))
    page.locator("#train-max-steps input").fill("3")
    page.locator("#train-start").click()

    def this_run_completed():
        names = set(re.findall(r"demo-lora-[\d-]+", status.inner_text())) - earlier
        return "completed" in status.inner_text() and bool(names)

    wait_until(this_run_completed, 240, "the run to complete")
    assert "3. Chat" in status.inner_text()
    run_name = (set(re.findall(r"demo-lora-[\d-]+", status.inner_text())) - earlier).pop()
    wait_until(lambda: "Step (optimizer updates)" in loss_plot.inner_text(), 30, "the loss curve")  # titles in words

    page.locator("#train-open-chat").click()
    page.locator("#tab-chat").wait_for(state="visible")
    adapter = page.locator("#chat-adapter input")
    wait_until(lambda: run_name in adapter.input_value(), 15, "the run picked in the Chat tab")
