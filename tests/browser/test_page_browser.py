"""The page itself: the first screen says what to do, every control is labelled, failures are toasts."""

import re

from tests.browser.conftest import open_tab, wait_until

# Accordions to open so that every control is on screen when the labels are checked.
ACCORDIONS = {"data": ["data-mapping-accordion"], "train": ["train-advanced"],
              "chat": ["chat-sampling-accordion", "chat-compare-accordion", "chat-export-accordion"]}
CONTROLS = "input:visible, textarea:visible, select:visible"


def test_first_screen_says_what_to_do(page):
    header = page.locator("#studio-header")
    header.get_by_text("Start with the demo").wait_for()
    text = header.inner_text()
    for step in ("1 · Data", "2 · Train", "3 · Chat"):
        assert step in text
    assert page.locator("#space-banner").count() == 0  # only on a Space
    assert "No dataset yet" in page.locator("#data-overview").inner_text()


def open_accordion(page, elem_id):
    toggle = page.locator(f"#{elem_id} > button.label-wrap").first
    if "open" not in (toggle.get_attribute("class") or ""):
        toggle.click()
    wait_until(lambda: "open" in (toggle.get_attribute("class") or ""), 10, f"{elem_id} open")


def accessible_name(locator) -> str:
    """The name the accessibility tree gives a control ('' when it has none)."""
    first_line = locator.aria_snapshot().splitlines()[0]
    match = re.match(r'\s*- \'?[\w-]+ "(.*?)"', first_line)  # YAML quotes the line when the name has a colon
    return match.group(1).strip() if match else ""


def test_every_control_has_a_label(page):
    page.locator("#data-sample input").click()
    page.get_by_role("option", name=re.compile("broken-sample.jsonl")).click()
    page.locator("#data-summary").get_by_text("missing_think").wait_for()  # the results show their controls too
    seen = 0
    for tab, accordions in ACCORDIONS.items():
        open_tab(page, tab)
        for elem_id in accordions:
            open_accordion(page, elem_id)
        controls = page.locator(f"#tab-{tab}").locator(CONTROLS)
        unnamed = []
        for index in range(controls.count()):
            control = controls.nth(index)
            if not accessible_name(control):
                unnamed.append(control.evaluate("el => (el.closest('[id]') || {}).id + ': ' + el.outerHTML.slice(0, 120)"))
        assert not unnamed, f"{tab} tab: controls without a label: {unnamed}"
        seen += controls.count()
    assert seen > 40  # the walk did see the page


def test_failure_is_a_toast_with_the_fix(page):
    open_tab(page, "train")
    page.locator("#train-data textarea, #train-data input").first.fill("")
    page.locator("#train-start").click()
    toast = page.locator(".toast-body").filter(has_text="Choose a dataset")
    toast.wait_for()
    assert "Data tab" in toast.inner_text()  # the fix, not just the cause
    assert "Traceback" not in page.content()
