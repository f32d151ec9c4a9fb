"""How an error may quote what a job read from an input object (a manifest's cell, an image's EXIF
field): a short snippet, never the content. Whatever the object holds, an error, an item's outcome or
a record shows at most a few characters of one cell, next to the row and column it names, so that an
object that is no manifest (a `.env`, a key file) cannot be read back through a job's error."""
from __future__ import annotations

import re

# Shown whole: short plain words and numbers, and image file names (what a manifest's cells hold).
PLAIN = re.compile(r"[A-Za-z0-9 .,_+:-]{0,12}")
IMAGE_NAME = re.compile(r"[A-Za-z0-9 ._+/-]{1,200}\.(?:jpe?g|png)", re.IGNORECASE)
KEPT = 3            # characters kept of any other text


def snippet(value: object, quoted: bool = True) -> str:
    """`value` as an error may quote it: whole when short and plain, else its first characters and its length.

    >>> snippet("1,5"), snippet("img-001.jpg", quoted=False), snippet("STRIPE_KEY=sk_live_abcdef")
    ("'1,5'", 'img-001.jpg', "'STR…' (25 characters)")
    """
    text = str(value)
    mark = "'" if quoted else ""
    if PLAIN.fullmatch(text) or IMAGE_NAME.fullmatch(text):
        return f"{mark}{text}{mark}"
    return f"{mark}{text[:KEPT]}…{mark} ({len(text)} characters)"
