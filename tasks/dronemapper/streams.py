"""Streaming between S3 and the vendor, with bounded memory."""
from __future__ import annotations

from collections.abc import Iterator

from geoqueue.s3ref import S3Ref
from services.storage import ObjectStore, typed_errors


class S3Image:
    """An S3 object as a binary file-like that is opened on its first read and closed at its end
    (a single request holding hundreds of images keeps one open at a time). It rewinds by opening
    again, which is all the client asks of it when it resends after a token expired."""

    def __init__(self, store: ObjectStore, ref: S3Ref, size: int) -> None:
        self.store, self.ref, self.size = store, ref, size
        self._body = None
        self._position = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise OSError("an S3 image can only be rewound to its start")
        self.close()
        self._position = 0
        return 0

    def read(self, n: int = -1) -> bytes:
        if self._position >= self.size:
            return b""
        if self._body is None:
            self._body = self.store.open(self.ref, "images")
        with typed_errors(self.ref, "images"):  # a read that broke off is worth another try
            data = self._body.read(n if n is not None and n >= 0 else None)
        self._position += len(data)
        if not data or self._position >= self.size:
            self.close()
        return data

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None


class ChunkStream:
    """A read(n) over an iterator of chunks, for boto3's multipart upload: exactly n bytes
    until the end (S3 refuses parts under 5 MB but the last). Keeps an error the iterator raised,
    since boto3 may report it from its own threads under another type."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self.bytes_read = 0
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        while n is None or n < 0 or len(self._buffer) < n:
            try:
                chunk = next(self._chunks, None)
            except Exception as exc:
                self.error = exc
                raise
            if chunk is None:
                break
            self._buffer += chunk
        size = len(self._buffer) if n is None or n < 0 else min(n, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.bytes_read += len(data)
        return data

