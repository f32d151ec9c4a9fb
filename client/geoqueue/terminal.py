"""Text from a job's record as a terminal may show it. A vendor's message, an item's name (an S3
key) or a console line is text someone else wrote: its control characters (ANSI sequences, a
carriage return, a bell, a right-to-left override) would recolour, retitle, clear or rewrite what
the command prints. They are shown escaped instead, as Python writes them (`\\x1b[31m`)."""
from __future__ import annotations

import json
from typing import Any


def printable(text: Any) -> str:
    """`text` with every character that is not printable (str.isprintable) written as an escape."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def json_text(value: Any) -> str:
    """`value` as indented JSON for a terminal: json.dumps escapes every control character but DEL."""
    return json.dumps(value, indent=2).replace("\x7f", "\\u007f")
