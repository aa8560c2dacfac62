"""LaTeX in replies, for people: found in the text, shown by KaTeX on the page and as MathML in the report.

R1 models write math between `$…$`, `$$…$$`, `\\(…\\)` and `\\[…\\]`, and a final answer as a bare `\\boxed{…}`
outside any of them. The page's KaTeX (gr.Chatbot, gr.Dataframe) renders only what sits between delimiters, so
for display a bare box is put inside `$…$`; the report is a single file meant to be mailed, with no script and no
web font, so its math is MathML written here (latex2mathml), which browsers draw on their own.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

# Delimiters as the chat panes and the compare table are told to render them (KaTeX auto-render's form).
LATEX_DELIMITERS = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "\\[", "right": "\\]", "display": True},
    {"left": "\\(", "right": "\\)", "display": False},
    {"left": "$", "right": "$", "display": False},
]

# One math span: display forms first; a single `$` opens only before a non-space and closes only after one and
# not before a digit, so "costs $5 and $6" stays text.
_MATH = re.compile(r"\$\$(?P<block>.+?)\$\$|\\\[(?P<bracket>.+?)\\\]|\\\((?P<paren>.+?)\\\)"
                   r"|(?<![\\$])\$(?=\S)(?P<inline>(?:[^$\\]|\\.)+?)(?<=\S)\$(?!\d)", re.DOTALL)
_BOXED = "\\boxed{"
MATHML_NAMESPACE = "http://www.w3.org/1998/Math/MathML"


@dataclass(frozen=True)
class Piece:
    text: str
    math: bool = False
    display: bool = False


def boxed_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every complete `\\boxed{…}` in `text`, outermost only; an unclosed one is left as text."""
    spans, start = [], text.find(_BOXED)
    while start >= 0:
        depth, position = 1, start + len(_BOXED)
        while position < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            position += 1
        if depth:
            break  # unclosed: nothing after it can close a box either
        spans.append((start, position))
        start = text.find(_BOXED, position)
    return spans


def pieces(text: str) -> list[Piece]:
    """`text` cut into plain text and math (delimited, or a bare `\\boxed{…}` outside any delimiters)."""
    out: list[Piece] = []

    def plain(part: str) -> None:
        cursor = 0
        for start, end in boxed_spans(part):
            if start > cursor:
                out.append(Piece(part[cursor:start]))
            out.append(Piece(part[start:end], math=True))
            cursor = end
        if cursor < len(part):
            out.append(Piece(part[cursor:]))

    cursor = 0
    for match in _MATH.finditer(text):
        plain(text[cursor:match.start()])
        kind = match.lastgroup
        out.append(Piece(match.group(kind), math=True, display=kind in ("block", "bracket")))
        cursor = match.end()
    plain(text[cursor:])
    return [piece for piece in out if piece.text]


def with_boxed_in_math(text: str) -> str:
    """`text` with each bare `\\boxed{…}` put between `$…$`, so that the page's KaTeX draws the box (display
    only: the text kept and scored is the model's own)."""
    result, cursor = [], 0
    for match in _MATH.finditer(text):
        result.append(_box_plain(text[cursor:match.start()]))
        result.append(match.group(0))
        cursor = match.end()
    result.append(_box_plain(text[cursor:]))
    return "".join(result)


def without_boxed_in_math(text: str) -> str:
    """`with_boxed_in_math` undone: a pane's text as the model wrote it, for the next turn's history."""
    out, cursor = [], 0
    for start, end in boxed_spans(text):
        if start > 0 and text[start - 1] == "$" and text[end:end + 1] == "$":
            out += [text[cursor:start - 1], text[start:end]]
            cursor = end + 1
    out.append(text[cursor:])
    return "".join(out)


def _box_plain(part: str) -> str:
    out, cursor = [], 0
    for start, end in boxed_spans(part):
        out += [part[cursor:start], "$", part[start:end], "$"]
        cursor = end
    out.append(part[cursor:])
    return "".join(out)


def _mathml(latex: str, display: bool) -> str | None:
    """MathML for `latex`, or None when it cannot be converted (no converter installed, or LaTeX it rejects)."""
    try:
        from latex2mathml.converter import convert
    except ImportError:
        return None
    try:
        mathml = convert(latex, display="block" if display else "inline")
    except Exception:  # the converter raises many kinds on LaTeX it does not know; the text is shown instead
        return None
    # HTML needs no namespace on <math>; without it the page names no address at all.
    return mathml.replace(f' xmlns="{MATHML_NAMESPACE}"', "")


def _plain_math(latex: str) -> str:
    """Readable math where no MathML can be made: the LaTeX as typed, a box drawn around `\\boxed{…}`."""
    out, cursor = [], 0
    for start, end in boxed_spans(latex):
        out.append(html.escape(latex[cursor:start]))
        out.append(f'<span class="boxed">{html.escape(latex[start + len(_BOXED):end - 1])}</span>')
        cursor = end
    out.append(html.escape(latex[cursor:]))
    return f'<span class="tex">{"".join(out)}</span>'


def to_html(text: str) -> str:
    """`text` as HTML for the report: text escaped (line breaks kept), math as MathML, else readable LaTeX."""
    parts = []
    for piece in pieces(text):
        if not piece.math:
            parts.append(html.escape(piece.text).replace("\n", "<br>"))
            continue
        parts.append(_mathml(piece.text, piece.display) or _plain_math(piece.text))
    return "".join(parts)


# The report's look of its math: MathML Core (Chrome, Firefox, Safari) draws no box for <menclose>, so its border
# is drawn here; the fallback's box likewise.
MATH_STYLE = ("menclose[notation~='box'],.boxed{border:1px solid #374151;padding:0 .25em;border-radius:2px}"
              "math[display='block']{margin:.4em 0}.tex{font-family:ui-monospace,monospace}")
