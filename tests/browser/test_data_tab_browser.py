"""The Data tab as a person uses it: upload the broken sample, read the codes, fix, download."""

import json

from studio.data.checks import CODES
from studio.config import SAMPLES_DIR
from tests.browser.conftest import open_tab, save_screenshot, wait_until


def test_upload_check_fix_download(page, tmp_path):
    page.locator("#data-upload input[type=file]").set_input_files(str(SAMPLES_DIR / "broken-sample.jsonl"))
    summary = page.locator("#data-summary")
    summary.get_by_text("missing_think").wait_for()
    for code in CODES:
        assert summary.get_by_text(code, exact=True).count() >= 1, code
    assert "conversation" in page.locator("#data-overview").inner_text()
    page.locator("#data-problems").get_by_text("unclosed_think").first.click()
    page.locator("#data-preview").get_by_text("reasoning").first.wait_for()
    save_screenshot(page, "data-tab.png")

    page.locator("#data-apply").click()
    page.locator("#data-fix-status").get_by_text("Cleaned").wait_for()
    with page.expect_download() as download_info:
        page.locator("#data-download").click()
    path = tmp_path / "clean.jsonl"
    download_info.value.save_as(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows and all("messages" in row for row in rows)  # the default export layout
    assert all(row["messages"][-1]["content"].startswith("<think>\n") for row in rows)

    # The cleaned set becomes the Train tab's dataset.
    open_tab(page, "train")
    dataset = page.locator("#train-data textarea, #train-data input").first
    wait_until(lambda: "-clean-" in dataset.input_value(), 10, "the cleaned set in the Train tab")


def test_a_failed_upload_clears_the_old_report(page, tmp_path):
    page.locator("#data-upload input[type=file]").set_input_files(str(SAMPLES_DIR / "broken-sample.jsonl"))
    page.locator("#data-summary").get_by_text("missing_think").wait_for()
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    page.locator("#data-upload button[aria-label='Clear'], #data-upload button[aria-label='Remove']").first.click()
    page.locator("#data-upload input[type=file]").set_input_files(str(bad))
    page.locator(".toast-body").filter(has_text="not valid JSON").wait_for()
    overview = page.locator("#data-overview")
    wait_until(lambda: "could not be checked" in overview.inner_text(), 10, "the overview to say the check failed")
    assert not page.locator("#data-summary").is_visible()  # the old file's report is gone from the page
    assert not page.locator("#data-apply").is_visible()  # so Apply fixes cannot clean the old file
    page.locator("#data-check").click()  # Check again checks the file the box shows, not the last good one
    page.wait_for_timeout(3000)
    assert "could not be checked" in overview.inner_text() and not page.locator("#data-summary").is_visible()
