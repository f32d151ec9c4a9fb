"""The URL a job's record is sent to when it ends: checked at submit, shown without its secrets."""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from geoqueue.params import InvalidParams


def check_callback_url(url: object) -> str:
    """An http(s) URL with a host; where it may point (no private addresses) is the fleet's check."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise InvalidParams(f"callback_url: must be an http or https URL, got {url!r}", field="callback_url")
    return url  # type: ignore[return-value]


def shown_url(url: str) -> str:
    """A callback URL as responses and logs show it: no user, password, query or fragment, which
    may carry the receiver's token."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, netloc + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))
