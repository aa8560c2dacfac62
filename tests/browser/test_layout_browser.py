"""The page laid out at a phone's width (390 px), a tablet's (768 px) and a desktop's (1,400 px): nothing sticks out
of the screen, buttons keep a button's size, boxes keep room for their text, and the Data tab's tables show every
column and every issue code without a scroll of their own.

Each tab is saved as test-artifacts/layout-<width>-<tab>.png, to look at what the numbers describe.
"""

import re

import pytest

from studio.data.checks import CODES
from tests.browser.conftest import ARTIFACTS, open_tab

WIDTHS = (390, 768, 1400)
TABS = ("data", "train", "chat")
TALLEST_BUTTON = 120  # px: a button taller than this has been stretched to fill a row
NARROWEST_ESTIMATE = 250  # px: the Train tab's estimate reads as sentences, not a syllable a line
NARROWEST_RUN_PICKER = 280  # px: the Chat tab's run picker shows a run's whole name (demo-lora-20261201-230000)

# Visible elements whose right edge is past the viewport and that no clipping box (an inner scroll) holds in.
OVERFLOWING = """() => {
  const shown = el => { const box = el.getBoundingClientRect(); const style = getComputedStyle(el);
                        return box.width > 0 && box.height > 0 && style.visibility !== 'hidden'; };
  const heldIn = el => { for (let up = el.parentElement; up; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== 'visible' && up.getBoundingClientRect().right <= innerWidth + 1) return true;
    } return false; };
  return [...document.body.querySelectorAll('*')].filter(shown)
    .filter(el => el.getBoundingClientRect().right > innerWidth + 1 && !heldIn(el))
    .slice(0, 5).map(el => `${el.closest('[id]')?.id}: <${el.tagName.toLowerCase()}> to ${Math.round(el.getBoundingClientRect().right)} px`);
}"""

# Buttons taller than `limit`; the file drop zones are buttons too, but are meant to be large.
TALL_BUTTONS = """limit => [...document.querySelectorAll('button:not(.upload-container)')]
  .filter(b => b.getBoundingClientRect().width > 0 && b.getBoundingClientRect().height > limit)
  .map(b => `${b.id || b.closest('[id]')?.id || b.innerText.trim().slice(0, 30)}: ${Math.round(b.getBoundingClientRect().height)} px tall`)"""

# A Data-tab table: its columns (left and right edge), its scroll box, and the codes it shows.
TABLE = """id => { const root = document.getElementById(id);
  const viewport = root.querySelector('.virtual-table-viewport'); const box = viewport.getBoundingClientRect();
  return { left: box.left, right: box.right, scrollWidth: viewport.scrollWidth, clientWidth: viewport.clientWidth,
           scrollHeight: viewport.scrollHeight, clientHeight: viewport.clientHeight,
           columns: [...root.querySelectorAll('.header-cell')].map(cell => [cell.innerText.trim(),
                     cell.getBoundingClientRect().left, cell.getBoundingClientRect().right]),
           text: viewport.innerText }; }"""

# The histogram's tick labels on the x axis: [left, right] of each, in drawing order.
X_LABELS = """() => [...document.querySelectorAll('#data-histogram .role-axis-label text')]
  .filter(t => t.closest('.role-axis')?.getAttribute('aria-label')?.includes('X-axis'))
  .map(t => { const box = t.getBoundingClientRect(); return [box.left, box.right, box.top, box.bottom]; })"""


def table_problems(page, elem_id: str, name: str, all_rows: bool) -> list[str]:
    table = page.evaluate(TABLE, elem_id)
    problems = []
    if table["scrollWidth"] > table["clientWidth"] + 1:
        problems.append(f"{name} scrolls sideways ({table['scrollWidth']} px of content in {table['clientWidth']} px)")
    for column, left, right in table["columns"]:
        if right > table["right"] + 1 or left < table["left"] - 1 or right > page.viewport_size["width"]:
            problems.append(f"{name}: column {column!r} is off-screen ({left:.0f}–{right:.0f} px)")
    if all_rows:
        if table["scrollHeight"] > table["clientHeight"] + 1:
            problems.append(f"{name} hides rows in a scroll of its own ({table['scrollHeight']} px of rows in "
                            f"{table['clientHeight']} px)")
        hidden = [code for code in CODES if not re.search(rf"\b{code}\b", table["text"])]
        if hidden:
            problems.append(f"{name} does not show {len(hidden)} of {len(CODES)} codes: {', '.join(hidden)}")
    return problems


def overlapping(boxes) -> list[tuple[int, int]]:
    """Pairs of neighbouring boxes that cover each other (a pixel of anti-aliasing allowed)."""
    return [(i, i + 1) for i, (a, b) in enumerate(zip(boxes, boxes[1:]))
            if a[1] > b[0] + 1 and b[1] > a[0] + 1 and a[3] > b[2] + 1 and b[3] > a[2] + 1]


@pytest.mark.parametrize("width", WIDTHS)
def test_every_tab_fits_the_screen(browser, studio_url, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(studio_url)
        page.locator("#data-sample input").click()
        page.get_by_role("option", name=re.compile("broken-sample.jsonl")).click()
        page.locator("#data-summary").get_by_text("missing_think").wait_for()
        page.locator("#data-histogram svg").first.wait_for()
        ARTIFACTS.mkdir(exist_ok=True)
        problems = []
        for tab in TABS:
            open_tab(page, tab)
            page.wait_for_timeout(1000)  # tables size their columns and plots draw after they show
            page.screenshot(path=str(ARTIFACTS / f"layout-{width}-{tab}.png"), full_page=True)
            found = []
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            if scroll_width > width + 1:
                found.append(f"the page is {scroll_width} px wide")
            found += page.evaluate(OVERFLOWING)
            found += page.evaluate(TALL_BUTTONS, TALLEST_BUTTON)
            if tab == "data":
                found += table_problems(page, "data-summary", "Issues by code", all_rows=True)
                found += table_problems(page, "data-problems", "Problem rows", all_rows=False)
                labels = page.evaluate(X_LABELS)
                assert labels, "the histogram has no x-axis labels to measure"
                if overlapping(labels):
                    found.append(f"the histogram's x labels overlap: pairs {overlapping(labels)[:3]}")
            if tab == "train":
                estimate = page.locator("#train-estimate").bounding_box()
                if estimate["width"] < NARROWEST_ESTIMATE:
                    found.append(f"the estimate box is {estimate['width']:.0f} px wide")
            if tab == "chat":
                picker = page.locator("#chat-adapter").bounding_box()
                if picker["width"] < NARROWEST_RUN_PICKER:
                    found.append(f"the run picker is {picker['width']:.0f} px wide: a run's name is cut")
            problems += [f"{tab} tab at {width} px: {text}" for text in found]
        assert not problems, "\n".join(problems)
    finally:
        context.close()
