"""A reply's token ids as text a person can read, at any point of its streaming.

Byte-level tokenizers (R1's, the demo's) split a character of several UTF-8 bytes (é, 中, an emoji) over several
tokens, and decoding a list that ends between them gives U+FFFD ("�") for the bytes so far. The text is decoded
again from the whole id list at every redraw, so holding back that tail is dropping it: the next redraw, with
the rest of the character's bytes, shows it whole. At the end the whole list is decoded, and bytes that are
truly invalid (a model can emit any byte token) are dropped rather than shown as "�" in a pane, the compare
table, the JSON or the report.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def readable_text(tokenizer, ids: list[int]) -> str:
    """`ids` decoded with special tokens kept (the reasoning tags are special in R1's vocabulary), without the
    replacement characters that a cut or invalid byte sequence decodes to."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    return text.replace(REPLACEMENT, "") if REPLACEMENT in text else text
