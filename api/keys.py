"""API keys, configured as hashes (GEOQUEUE_API_KEYS): `name:scope+scope:sha256hex[:app]` entries.

Each key belongs to one app (README, "Several apps on one fleet"): the app named last in its entry,
else the key's own name; several keys may share an app. A key sees and acts on its app's jobs only.

Keys are random 32-byte tokens, so one SHA-256 is enough to store them (no salt or slow hash is
needed for secrets that cannot be guessed); the service never holds a key, only its hash.
`python -m api.keys NAME [--app APP] submit read` makes a key and prints the entry to configure.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
import sys
from dataclasses import dataclass

from geoqueue.job_record import APP

SCOPES = ("submit", "read")
PREFIX = "gq_"


@dataclass(frozen=True)
class ApiKey:
    name: str
    scopes: frozenset[str]
    digest: str
    app: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse(config: str) -> list[ApiKey]:
    """The configured keys; a malformed entry stops the service at start, naming the entry."""
    keys = []
    for entry in config.split():
        name, scopes, hexdigest, app = (entry.split(":") + ["", "", ""])[:4]
        app = app or name
        wanted = frozenset(filter(None, scopes.split("+")))
        if not name or not wanted or not wanted <= set(SCOPES) or len(hexdigest) != 64 or entry.count(":") > 3:
            raise ValueError(f"GEOQUEUE_API_KEYS: entry for {name!r} is not name:scope+scope:sha256hex[:app] "
                             f"(scopes: {', '.join(SCOPES)})")
        if not APP.fullmatch(app):
            raise ValueError(f"GEOQUEUE_API_KEYS: entry for {name!r}: its app {app!r} is not an app name (1 to 64 "
                             "letters, digits, '-' or '_'); name the app at the entry's end: name:scopes:hash:app")
        keys.append(ApiKey(name, wanted, hexdigest.lower(), app))
    return keys


def find(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """The key whose hash matches, compared in constant time."""
    presented_digest = digest(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(key.digest, presented_digest):
            found = key
    return found


def new_key(name: str, scopes: list[str], app: str | None = None) -> tuple[str, str]:
    """(key, its GEOQUEUE_API_KEYS entry); the key's app is `app`, else its name."""
    key = PREFIX + secrets.token_urlsafe(32)
    entry = f"{name}:{'+'.join(scopes)}:{digest(key)}" + (f":{app}" if app and app != name else "")
    parse(entry)
    return key, entry


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.keys", description="Make an API key and its entry.")
    parser.add_argument("name", help="the key's name (its app too, unless --app names another)")
    parser.add_argument("scopes", nargs="+", choices=SCOPES, metavar="{" + "|".join(SCOPES) + "}")
    parser.add_argument("--app", help="the app the key belongs to (default: its name); keys may share an app")
    args = parser.parse_args(argv)
    try:
        key, entry = new_key(args.name, args.scopes, args.app)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"key (give it to the app; it is shown once): {key}")
    print(f"entry (add it to GEOQUEUE_API_KEYS):       {entry}")
    print(f"app:                                       {args.app or args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
