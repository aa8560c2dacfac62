"""The Chat tab's math and downloads as a person sees them: KaTeX in the panes and the compare table, one click
per download, and a bad answer pattern quoted as it was typed."""

import json
import re
import zipfile

import pytest

from studio.config import SAMPLES_DIR
from tests.browser.conftest import open_tab, wait_until

PROMPT = "What is $\\frac{1}{2} + \\frac{1}{2}$?"


@pytest.fixture(scope="module")
def short_run():
    """A short demo run (8 steps): enough for an adapter to chat with and export."""
    from studio.train.job import default_config
    from studio.workspace import workspace

    config = default_config(data=str(SAMPLES_DIR / "demo-train.jsonl"), model="demo", max_steps=8,
                            output=str(workspace().new_run_folder("demo", "lora")))
    job = workspace().start(config)
    assert job.wait(300)["state"] == "completed", job.status
    return job.folder.name


def pick(page, run):
    open_tab(page, "chat")
    page.locator("#chat-adapter input").click()
    page.get_by_role("option", name=re.compile(re.escape(run))).click()


def test_math_is_drawn_in_the_panes_and_the_compare_table(page, short_run, tmp_path):
    pick(page, short_run)
    page.locator("#chat-sampling-accordion > button.label-wrap").click()
    page.locator("#chat-max-new-tokens input").fill("24")
    prompt = page.locator("#chat-prompt textarea")
    prompt.fill(PROMPT)
    prompt.press("Enter")
    for side in ("base", "lora"):  # the question in each pane, its fraction drawn by KaTeX
        page.locator(f"#chat-{side} .katex .mfrac").first.wait_for(timeout=120_000)

    page.locator("#chat-compare-accordion > button.label-wrap").click()
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": PROMPT, "reference": "1"}) + "\n", encoding="utf-8")
    page.locator("#chat-prompts-file input[type=file]").set_input_files(str(prompts))
    page.locator("#chat-prompts-file").get_by_text("prompts.jsonl").wait_for()
    page.locator("#chat-compare").click()
    # The prompt's fraction, drawn in its cell (the table also keeps hidden copies of its cells: the visible one).
    drawn = page.locator("#chat-compare-table .katex:visible").first
    drawn.wait_for(timeout=120_000)
    assert drawn.locator(".mfrac").count() > 0
    legend = page.locator("#chat-compare-summary").inner_text()
    assert "keeps R1 format" in legend and "matches reference" in legend


def test_each_download_is_one_click(page, short_run, tmp_path):
    pick(page, short_run)
    page.locator("#chat-export-accordion > button.label-wrap").click()
    for button, name in (("chat-zip", "adapter.zip"), ("chat-report", "report.html")):
        link = page.locator(f"#{button}")
        wait_until(lambda: link.is_enabled(), 60, f"the {button} download to be ready")
        with page.expect_download() as info:
            link.click()  # the one click: no second button to find
        info.value.save_as(tmp_path / name)
    with zipfile.ZipFile(tmp_path / "adapter.zip") as handle:
        names = handle.namelist()
        card = handle.read(next(name for name in names if name.endswith("README.md"))).decode()
    assert "[More Information Needed]" not in card and "from peft import PeftModel" in card
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "No batch compare in this report" in report  # none was run in this page
    assert "No batch compare yet" in page.locator("#chat-report-note").inner_text()


def test_a_bad_pattern_is_explained_and_quoted_as_typed(page, short_run):
    pick(page, short_run)
    page.locator("#chat-compare-accordion > button.label-wrap").click()
    words = page.locator("#chat-pattern-words")
    assert "the final answer written inside \\boxed{…}" in words.inner_text()
    typed = r"\boxed{(\d+"
    page.locator("#chat-pattern textarea, #chat-pattern input").first.fill(typed)
    wait_until(lambda: typed in words.inner_text(), 20, "the pattern's words to update")
    page.locator("#chat-compare").click()
    toast = page.locator("[data-testid=toast-body]").first
    toast.wait_for(timeout=120_000)
    text = toast.inner_text()
    assert typed in text and typed.replace("\\", "\\\\") not in text
