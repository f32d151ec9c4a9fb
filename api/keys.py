"""API keys, configured as hashes (GEOQUEUE_API_KEYS): `name:scope+scope:sha256hex` entries.

Keys are random 32-byte tokens, so one SHA-256 is enough to store them (no salt or slow hash is
needed for secrets that cannot be guessed); the service never holds a key, only its hash.
`python -m api.keys NAME submit read` makes a key and prints the entry to configure.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from dataclasses import dataclass

SCOPES = ("submit", "read")
PREFIX = "gq_"


@dataclass(frozen=True)
class ApiKey:
    name: str
    scopes: frozenset[str]
    digest: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse(config: str) -> list[ApiKey]:
    """The configured keys; a malformed entry stops the service at start, naming the entry."""
    keys = []
    for entry in config.split():
        name, scopes, hexdigest = (entry.split(":") + ["", ""])[:3]
        wanted = frozenset(filter(None, scopes.split("+")))
        if not name or not wanted or not wanted <= set(SCOPES) or len(hexdigest) != 64:
            raise ValueError(f"GEOQUEUE_API_KEYS: entry for {name!r} is not name:scope+scope:sha256hex "
                             f"(scopes: {', '.join(SCOPES)})")
        keys.append(ApiKey(name, wanted, hexdigest.lower()))
    return keys


def find(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """The key whose hash matches, compared in constant time."""
    presented_digest = digest(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(key.digest, presented_digest):
            found = key
    return found


def new_key(name: str, scopes: list[str]) -> tuple[str, str]:
    """(key, its GEOQUEUE_API_KEYS entry)."""
    key = PREFIX + secrets.token_urlsafe(32)
    entry = f"{name}:{'+'.join(scopes)}:{digest(key)}"
    parse(entry)
    return key, entry


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not set(argv[1:]) <= set(SCOPES):
        print(f"usage: python -m api.keys NAME {{{'|'.join(SCOPES)}}}...", file=sys.stderr)
        return 2
    key, entry = new_key(argv[0], argv[1:])
    print(f"key (give it to the app; it is shown once): {key}")
    print(f"entry (add it to GEOQUEUE_API_KEYS):       {entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
