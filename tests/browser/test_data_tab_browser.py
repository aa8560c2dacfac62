"""The Data tab as a person uses it: upload the broken sample, read the codes, fix, download."""

import json
from pathlib import Path

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
    assert rows and all("conversation" in row for row in rows)  # the input's layout is kept
    assert all(row["conversation"][-1]["content"].startswith("<think>\n") for row in rows)

    # The cleaned set becomes the Train tab's dataset, and stays it when the page is reloaded.
    open_tab(page, "train")
    dataset = page.locator("#train-data textarea, #train-data input").first
    wait_until(lambda: "-clean-" in dataset.input_value(), 10, "the cleaned set in the Train tab")
    cleaned = dataset.input_value()
    page.reload()
    page.locator("#data-cleaned-note").get_by_text("latest cleaned set").wait_for()
    open_tab(page, "train")
    dataset = page.locator("#train-data textarea, #train-data input").first
    wait_until(lambda: dataset.input_value() == cleaned, 10, "the cleaned set in the Train tab after a reload")
    Path(cleaned).unlink()  # the tests after this one start from the demo data


def test_check_the_preselected_sample_and_name_an_empty_upload(page, tmp_path):
    check = page.locator("#data-check")
    assert check.inner_text().strip() == "Check dataset"
    check.click()  # the first sample is preselected: there is something to check
    page.locator("#data-overview").get_by_text("No problems found").wait_for()
    assert check.inner_text().strip() == "Check again"
    assert "max_length 4,096" in page.locator("#data-histogram").inner_text()

    empty = tmp_path / "my-empty-set.jsonl"
    empty.write_text("")
    page.locator("#data-upload input[type=file]").set_input_files(str(empty))
    toast = page.locator(".toast-body").filter(has_text="holds no rows")
    toast.wait_for()
    message = toast.inner_text().strip().splitlines()[-1]  # under the toast's title and close button
    assert message.startswith("my-empty-set.jsonl holds no rows")
    assert str(tmp_path) not in toast.inner_text() and "/gradio/" not in toast.inner_text()


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


def test_max_length_follows_the_model_and_the_train_tab(page):
    length = page.locator("#data-max-length input")
    assert length.input_value() == "4096"  # the default tokenizer is a real R1 base's
    page.locator("#data-model input").click()
    page.get_by_role("option", name="demo", exact=True).click()
    wait_until(lambda: length.input_value() == "512", 10, "the demo preset's max length in the Data tab")

    open_tab(page, "train")
    train_length = page.locator("#train-max-length input")
    train_length.fill("1536")
    train_length.press("Enter")
    open_tab(page, "data")
    wait_until(lambda: length.input_value() == "1536", 10, "the Train tab's max length in the Data tab")
