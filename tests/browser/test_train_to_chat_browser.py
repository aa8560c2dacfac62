"""From a finished run on the Train tab to the Chat tab with that run picked, as a person clicks it."""

import re

from tests.browser.conftest import open_tab, wait_until


def test_a_finished_run_opens_in_the_chat_tab(page):
    open_tab(page, "train")
    loss_plot = page.locator("#train-loss-plot")
    page.locator("#train-max-steps input").fill("3")
    page.locator("#train-start").click()
    status = page.locator("#train-status")
    wait_until(lambda: "completed" in status.inner_text(), 240, "the run to complete")
    assert "3. Chat" in status.inner_text()
    run_name = re.search(r"demo-lora-[\d-]+", status.inner_text()).group(0)
    assert "Step (optimizer updates)" in loss_plot.inner_text()  # axis titles in words

    page.locator("#train-open-chat").click()
    page.locator("#tab-chat").wait_for(state="visible")
    adapter = page.locator("#chat-adapter input")
    wait_until(lambda: run_name in adapter.input_value(), 15, "the run picked in the Chat tab")
