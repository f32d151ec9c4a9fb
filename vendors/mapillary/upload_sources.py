"""The bytes to upload, from bytes, a path or an open binary file, as a seekable stream and its size."""
from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import IO, BinaryIO

Source = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO


@contextlib.contextmanager
def open_source(source: Source) -> Iterator[tuple[IO[bytes], int]]:
    """A seekable binary stream and its size, for bytes, a path or an open binary file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        yield io.BytesIO(data), len(data)
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as stream:
            yield stream, os.fstat(stream.fileno()).st_size
    else:
        start = source.tell()
        size = source.seek(0, io.SEEK_END) - start
        source.seek(start)
        yield _Window(source, start), size


class _Window:
    """A view of a file from `start`, so offsets count from where the caller's stream was."""

    def __init__(self, raw: BinaryIO, start: int) -> None:
        self.raw, self.start = raw, start

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.raw.seek(self.start + offset if whence == io.SEEK_SET else offset, whence) - self.start

    def tell(self) -> int:
        return self.raw.tell() - self.start

    def read(self, size: int = -1) -> bytes:
        return self.raw.read(size)
