"""Downloads, the same for every vendor: a streamed body read as it arrives (a body cut mid-stream
is a TransientError), and a path written whole or not at all."""
from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from typing import IO

import requests
import urllib3

from vendors.errors import TransientError

# What reading a streamed body raises when it is cut mid-stream: requests wraps most of it, urllib3
# and the socket the rest. Like a dropped connection, such a cut is worth another try.
BODY_CUT = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


def body_chunks(response: requests.Response, chunk_size: int, *, vendor: str, what: str) -> Iterator[bytes]:
    """The body of a streamed answer as it arrives; cut mid-stream, it raises TransientError."""
    received = 0
    try:
        for chunk in response.iter_content(chunk_size):
            received += len(chunk)
            yield chunk
    except BODY_CUT as exc:
        raise TransientError(f"{vendor}: {what} broke off after {received} bytes", vendor=vendor) from exc


def save(chunks: Iterable[bytes], dest: str | os.PathLike | IO[bytes]) -> int:
    """Write chunks to a binary file-like, or to a path through a partial file beside it that
    replaces the path only when complete (a failure leaves no file); the number of bytes written."""
    if not isinstance(dest, (str, os.PathLike)):
        return _write(chunks, dest)
    partial = f"{os.fspath(dest)}.{secrets.token_hex(4)}.part"
    out = open(partial, "xb")  # a new name: two downloads to one path never share a partial file
    try:
        with out:
            written = _write(chunks, out)
        os.replace(partial, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise
    return written


def _write(chunks: Iterable[bytes], out: IO[bytes]) -> int:
    written = 0
    for chunk in chunks:
        out.write(chunk)
        written += len(chunk)
    return written
