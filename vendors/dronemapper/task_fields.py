"""A task's fields as the vendor takes them: options as [{name, value}], form values as strings."""
from __future__ import annotations

from typing import Any

Options = dict[str, Any] | list[dict[str, Any]] | None


def task_fields(**fields: Any) -> dict:
    data = {k: v for k, v in fields.items() if v is not None}
    if "options" in data:
        data["options"] = encode_options(data["options"])
    return data


def encode_options(options: Options) -> list[dict]:
    """[{name, value}] from a dict or such a list. WebODM refuses a falsy value ("Invalid options"),
    so False and 0 go as the strings the node parses; a None value leaves the option unset."""
    pairs = options.items() if isinstance(options, dict) else ((o["name"], o["value"]) for o in options or [])
    encoded = []
    for name, value in pairs:
        if value is None:
            continue
        if value is False or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0):
            value = "false" if value is False else str(value)
        encoded.append({"name": str(name), "value": value})
    return encoded


def form_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
