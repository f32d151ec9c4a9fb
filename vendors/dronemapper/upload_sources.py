"""Images as the streamed multipart upload reads them: each pulled from its source (bytes, a file,
a path or an iterator of chunks) only when the upload reaches it, and rewound for another try."""
from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from typing import IO, Any

from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor

from vendors.dronemapper.errors import VENDOR
from vendors.errors import InputError, TransientError

# One image to upload: (filename, bytes | binary file-like | iterator of byte chunks | path, size).
ImageSource = bytes | IO[bytes] | Iterable[bytes] | str | os.PathLike
ImageItem = tuple[str, ImageSource, int]
Progress = Callable[[int, int], None]  # (bytes sent, bytes in all)


class ImageReader:
    """One image as the multipart encoder reads it: exactly `size` bytes, pulled from its source
    only when the upload reaches it. `len()` is what is left, as requests-toolbelt expects."""

    def __init__(self, filename: str, source: ImageSource, size: int) -> None:
        if not filename:
            raise InputError(f"{VENDOR}: an image needs a filename", vendor=VENDOR, field="images")
        if not isinstance(size, int) or size < 0:
            raise InputError(f"{VENDOR}: {filename}: size must be a byte count, got {size!r}",
                             vendor=VENDOR, field="images")
        self.filename, self.size, self.source = filename, size, source
        self._start = source.tell() if _seekable(source) else None
        self._reset()

    def _reset(self) -> None:
        self.sent, self._pending, self._read, self._closer = 0, b"", None, None

    def rewind(self) -> None:
        """Be ready to send again, if the source can be read again."""
        if isinstance(self.source, (bytes, str, os.PathLike)):
            pass
        elif self._start is not None:
            self.source.seek(self._start)
        else:
            raise TransientError(f"{VENDOR}: {self.filename} was streamed once and cannot be sent again",
                                 vendor=VENDOR)
        self._close()
        self._reset()

    def __len__(self) -> int:
        return self.size - self.sent

    def read(self, n: int = -1) -> bytes:
        want = len(self) if n is None or n < 0 else min(n, len(self))
        data = self._pull(want) if want else b""
        if len(data) < want:
            self._close()
            raise InputError(f"{VENDOR}: {self.filename} ended after {self.sent + len(data)} of {self.size} bytes",
                             vendor=VENDOR, field="images")
        self.sent += len(data)
        if self.sent == self.size:
            if self._pull(1):
                self._close()
                raise InputError(f"{VENDOR}: {self.filename} is longer than its stated {self.size} bytes",
                                 vendor=VENDOR, field="images")
            self._close()
        return data

    def _pull(self, n: int) -> bytes:
        """Up to n bytes from the source (fewer only at its end)."""
        if self._read is None:
            self._read, self._closer = _open_source(self.source)
        out = self._pending
        while len(out) < n:
            chunk = self._read(n - len(out))
            if not chunk:
                break
            out += chunk
        out, self._pending = out[:n], out[n:]
        return out

    def _close(self) -> None:
        if self._closer:
            self._closer()
        self._read, self._closer = None, None


def _open_source(source: ImageSource) -> tuple[Callable[[int], bytes], Callable[[], None] | None]:
    """A read(n) over any source, and a close for what we opened ourselves (a caller's file stays theirs)."""
    if isinstance(source, (str, os.PathLike)):
        handle = open(source, "rb")
        return handle.read, handle.close
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source).read, None
    if hasattr(source, "read"):
        return source.read, None
    chunks = (bytes(chunk) for chunk in source if chunk)  # an empty chunk is not the end
    return (lambda _n: next(chunks, b"")), getattr(source, "close", None)


def _seekable(source: Any) -> bool:
    try:
        return bool(source.seekable()) and isinstance(source.tell(), int)
    except (AttributeError, OSError, ValueError):
        return False


def measure(filename: str, source: ImageSource) -> int:
    if isinstance(source, (str, os.PathLike)):
        return os.path.getsize(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source)
    if _seekable(source):
        here = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(here)
        return end - here
    raise InputError(f"{VENDOR}: {filename}: give the size of a stream that cannot seek", vendor=VENDOR,
                     field="images")


def image_readers(images: Iterable[ImageItem | str | os.PathLike]) -> list[ImageReader]:
    readers = []
    for item in images:
        if isinstance(item, (str, os.PathLike)):
            item = (os.path.basename(item), item, os.path.getsize(item))
        filename, source, size = item
        readers.append(ImageReader(filename, source, size))
    names = [r.filename for r in readers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:  # the vendor keeps one file per name: a duplicate would silently lose an image
        raise InputError(f"{VENDOR}: duplicate image filename(s): {', '.join(duplicates)}", vendor=VENDOR,
                         field="images")
    return readers


def multipart(form: list[tuple[str, str]], readers: list[ImageReader],
              progress: Progress | None) -> Callable[[], dict]:
    """Request kwargs per try: a fresh streaming encoder, the images rewound after the first."""
    tries = []

    def body() -> dict:
        if tries:
            for reader in readers:
                reader.rewind()
        tries.append(1)
        fields = list(form) + [("images", (r.filename, r, "image/jpeg")) for r in readers]
        encoder: Any = MultipartEncoder(fields)
        if progress:
            encoder = MultipartEncoderMonitor(encoder, lambda m: progress(m.bytes_read, m.len))
        return {"data": encoder, "headers": {"Content-Type": encoder.content_type}}
    return body
