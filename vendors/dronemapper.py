"""DroneMapper Cloud API client: a WebODM-style REST API (JWT auth, projects, tasks, assets).

    client = DroneMapperClient("https://dronemapper.io", user, password, token_store=store)
    project = client.create_project("Survey 42")
    task = client.create_task(project["id"], [("DJI_0001.JPG", open(path, "rb"), size), ...],
                              options={"dsm": True, "orthophoto-resolution": 2})
    client.get_task(project["id"], task["id"])["status"]   # Status.QUEUED ... Status.COMPLETED
    client.download_asset(project["id"], task["id"], "orthophoto.tif", "ortho.tif")

Errors are vendors.errors types: 400 InputError (with `field`), 401/403 AuthError, 404 NotFound,
429/5xx/transport TransientError. A 403 "Signature has expired." logs in again once and retries.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from enum import IntEnum
from typing import IO, Any, Callable, Iterable, Iterator, Union
from urllib.parse import parse_qsl, urlsplit

import requests
import urllib3
from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor

from vendors.errors import AuthError, Conflict, InputError, NotFound, TransientError, VendorError
from vendors.http import Retries, new_session, send
from vendors.tokens import MemoryTokenStore, TokenStore, renewal_ttl

VENDOR = "dronemapper"
TOKEN_EXPIRED = "Signature has expired."
# JWT-level rejections: the token, not the user, is at fault, so a fresh login may cure them.
TOKEN_REJECTED = (TOKEN_EXPIRED, "Error decoding signature.")
DEFAULT_TOKEN_LIFETIME_S = 6 * 3600.0  # WebODM's, for a token that carries no exp
PROJECT_FILTERS = ("id", "name", "description", "created_at", "search")
CHUNK = 1 << 20


class Status(IntEnum):
    QUEUED = 10
    RUNNING = 20
    FAILED = 30
    COMPLETED = 40
    CANCELED = 50


TERMINAL = frozenset({Status.FAILED, Status.COMPLETED, Status.CANCELED})


class PendingAction(IntEnum):
    CANCEL = 1
    REMOVE = 2
    RESTART = 3


# One image to upload: (filename, bytes | binary file-like | iterator of byte chunks | path, size).
ImageSource = Union[bytes, IO[bytes], Iterable[bytes], str, os.PathLike]
ImageItem = tuple[str, ImageSource, int]
Options = Union[dict[str, Any], list[dict[str, Any]], None]
Progress = Callable[[int, int], None]  # (bytes sent, bytes in all)
TaskId = Union[int, str]


class DroneMapperClient:
    def __init__(self, base_url: str, username: str, password: str, token_store: TokenStore | None = None,
                 timeout: float = 60.0, retries: Retries = Retries()) -> None:
        self.base_url = base_url.rstrip("/")
        self.username, self._password = username, password
        self.tokens = token_store or MemoryTokenStore()
        self.timeout = timeout
        self.retries = retries
        self.session = new_session()
        self._token_key = f"{VENDOR}:{self.base_url}:{username}"
        self._partial_upload: bool | None = None

    # --- auth ---

    def login(self) -> str:
        """A fresh token, cached until shortly before the `exp` it carries."""
        return self.retries.run(self._login_once)

    def _login_once(self) -> str:
        response = send(self.session, "POST", self._url("/api/token-auth/"), vendor=VENDOR, timeout=self.timeout,
                        data={"username": self.username, "password": self._password})
        if response.status_code in (400, 401, 403):
            message, _field = _error_text(response)
            raise AuthError(f"{VENDOR}: login refused: {message}", vendor=VENDOR,
                            status=response.status_code, vendor_message=message)
        _raise_for_status(response)
        token = response.json()["token"]
        expiry = token_expiry(token)
        lifetime = expiry - time.time() if expiry else DEFAULT_TOKEN_LIFETIME_S
        self.tokens.put(self._token_key, token, renewal_ttl(max(lifetime, 0.0)))
        return token

    def _token(self) -> str:
        token = self.tokens.get(self._token_key)
        if token:
            expiry = token_expiry(token)
            if expiry is None or expiry > time.time():  # a shared store may outlive what it holds
                return token
        return self.login()

    # --- plumbing ---

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (), idempotent: bool = True,
              body: Callable[[], dict] | None = None, headers: dict | None = None,
              **kwargs: Any) -> requests.Response:
        """One API call, retried where it failed; one that creates something (`idempotent=False`) only
        when the vendor answered. `body()` gives the request's body per try (an upload rewinds its images)."""
        return self.retries.run(lambda: self._call_once(method, path, ok, body, headers, kwargs), idempotent=idempotent)

    def _call_once(self, method: str, path: str, ok: tuple[int, ...], body: Callable[[], dict] | None,
                   headers: dict | None, kwargs: dict[str, Any]) -> requests.Response:
        """One try with the token; on a rejected token, one new login and one more try."""
        for attempt in (0, 1):
            extra = body() if body else {}
            all_headers = {**(headers or {}), **extra.pop("headers", {}), "Authorization": f"JWT {self._token()}"}
            response = send(self.session, method, self._url(path), vendor=VENDOR, timeout=self.timeout,
                            headers=all_headers, **kwargs, **extra)
            if attempt == 0 and _token_rejected(response):
                response.close()
                self.tokens.drop(self._token_key)
                continue
            break
        if response.status_code >= 400 and response.status_code not in ok:
            _raise_for_status(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        return response.json() if response.content else None

    @staticmethod
    def _task_path(project_id: int, task_id: TaskId, tail: str = "") -> str:
        # the doc's task ids are ints, current WebODM's are UUIDs: take either as given
        return f"/api/projects/{int(project_id)}/tasks/{task_id}/{tail}"

    # --- projects ---

    def create_project(self, name: str, description: str = "") -> dict:
        return self._json("POST", "/api/projects/", json={"name": name, "description": description}, idempotent=False)

    def update_project(self, project_id: int, *, name: str | None = None, description: str | None = None) -> dict:
        fields = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
        return self._json("PATCH", f"/api/projects/{int(project_id)}/", json=fields)

    def delete_project(self, project_id: int) -> None:
        """Deletes the project and all its tasks, irreversibly."""
        self._call("DELETE", f"/api/projects/{int(project_id)}/")

    def get_project(self, project_id: int) -> dict:
        return self._json("GET", f"/api/projects/{int(project_id)}/")

    def projects_page(self, page: int = 1, *, ordering: str | None = None, **filters: Any) -> dict:
        """One page: {count, next, previous, results}. Filters: id, name, description, created_at, search."""
        unknown = set(filters) - set(PROJECT_FILTERS)
        if unknown:
            raise InputError(f"{VENDOR}: unknown project filter(s): {', '.join(sorted(unknown))}",
                             vendor=VENDOR, field=sorted(unknown)[0])
        params = {k: v for k, v in filters.items() if v is not None}
        if ordering:
            params["ordering"] = ordering
        return self._json("GET", "/api/projects/", params={**params, "page": int(page)})

    def iter_projects(self, *, ordering: str | None = None, **filters: Any) -> Iterator[dict]:
        """Every matching project, page after page (following `next`)."""
        page = 1
        while True:
            data = self.projects_page(page, ordering=ordering, **filters)
            if isinstance(data, list):  # a server that ignores ?page= answers the whole list
                yield from data
                return
            yield from data["results"]
            following = _page_number(data.get("next"))
            if following is None or following <= page:
                return
            page = following

    def list_projects(self, *, ordering: str | None = None, **filters: Any) -> list[dict]:
        return list(self.iter_projects(ordering=ordering, **filters))

    # --- tasks ---

    def create_task(self, project_id: int, images: Iterable[ImageItem | str | os.PathLike] = (), *,
                    options: Options = None, name: str | None = None, processing_node: int | None = None,
                    auto_processing_node: bool | None = None, partial: bool = False,
                    progress: Progress | None = None) -> dict:
        """Create a task from at least 2 images, streamed as one multipart request.

        Images are (filename, source, size); a source is read only when the upload reaches it,
        so neither the set nor one image is held in memory. With `partial=True` no images are
        sent: add them with upload_image() and start processing with commit()."""
        fields = _task_fields(name=name, options=options, processing_node=processing_node,
                              auto_processing_node=auto_processing_node)
        if partial:
            return self._json("POST", f"/api/projects/{int(project_id)}/tasks/", json={"partial": True, **fields},
                              idempotent=False)
        readers = _image_readers(images)
        if len(readers) < 2:
            raise InputError(f"{VENDOR}: a task needs at least 2 images, got {len(readers)}",
                             vendor=VENDOR, field="images")
        form = [(k, json.dumps(v) if k == "options" else _form_value(v)) for k, v in fields.items()]
        return self._json("POST", f"/api/projects/{int(project_id)}/tasks/", body=_multipart(form, readers, progress),
                          idempotent=False)

    def upload_image(self, project_id: int, task_id: TaskId, filename: str, fileobj: ImageSource,
                     size: int | None = None, progress: Progress | None = None) -> dict:
        """Add one image to a partial task: {"success": true, "uploaded": {filename: bytes}}.
        Sending the same filename again replaces it, so a retry is safe."""
        reader = _ImageReader(filename, fileobj, size if size is not None else _measure(filename, fileobj))
        return self._json("POST", self._task_path(project_id, task_id, "upload/"),
                          body=_multipart([], [reader], progress))

    def commit(self, project_id: int, task_id: TaskId) -> dict:
        """Start processing a partial task (needs at least 2 uploaded images). Committing again is harmless."""
        return self._json("POST", self._task_path(project_id, task_id, "commit/"))

    def supports_partial_upload(self) -> bool:
        """Whether the server has WebODM's undocumented upload/commit routes. The probe is a GET,
        which DRF refuses with 405 where the route exists and a server without it answers 404."""
        if self._partial_upload is None:
            response = self._call("GET", self._task_path(0, 0, "upload/"), ok=(404, 405))
            self._partial_upload = response.status_code == 405
        return self._partial_upload

    def get_task(self, project_id: int, task_id: TaskId) -> dict:
        return self._json("GET", self._task_path(project_id, task_id))

    def list_tasks(self, project_id: int, *, status: int | None = None, ordering: str | None = None) -> list[dict]:
        params = {k: v for k, v in (("status", status), ("ordering", ordering)) if v is not None}
        return self._json("GET", f"/api/projects/{int(project_id)}/tasks/", params=params)

    def update_task(self, project_id: int, task_id: TaskId, *, name: str | None = None, options: Options = None,
                    processing_node: int | None = None, auto_processing_node: bool | None = None) -> dict:
        fields = _task_fields(name=name, options=options, processing_node=processing_node,
                              auto_processing_node=auto_processing_node)
        return self._json("PATCH", self._task_path(project_id, task_id), json=fields)

    def output(self, project_id: int, task_id: TaskId, line: int = 0) -> list[str]:
        """Console lines from `line` on; the next call's `line` is this one's plus len(result)."""
        text = self._json("GET", self._task_path(project_id, task_id, "output/"), params={"line": int(line)})
        return text.split("\n") if text else []

    def cancel(self, project_id: int, task_id: TaskId) -> None:
        self._action(project_id, task_id, "cancel")

    def remove(self, project_id: int, task_id: TaskId) -> None:
        """Remove the task and its assets (processing stops)."""
        self._action(project_id, task_id, "remove")

    def restart(self, project_id: int, task_id: TaskId, options: Options = None) -> None:
        """Re-run a failed, canceled or completed task, with new options if given. Until the vendor
        clears `pending_action`, the task still shows its old status (e.g. FAILED)."""
        if options is not None:
            self.update_task(project_id, task_id, options=options)
        self._action(project_id, task_id, "restart", idempotent=False)

    def _action(self, project_id: int, task_id: TaskId, action: str, idempotent: bool = True) -> None:
        result = self._json("POST", self._task_path(project_id, task_id, f"{action}/"), idempotent=idempotent)
        if not (isinstance(result, dict) and result.get("success")):
            raise VendorError(f"{VENDOR}: {action} not accepted: {result!r}", vendor=VENDOR)

    # --- assets ---

    def iter_asset(self, project_id: int, task_id: TaskId, asset: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The asset's bytes as they arrive (orthophoto.tif, dsm.tif, pointcloud.ply, all.zip, ...)."""
        return self._iter_download(self._task_path(project_id, task_id, f"download/{asset}"), chunk_size)

    def download_asset(self, project_id: int, task_id: TaskId, asset: str, dest: str | os.PathLike | IO[bytes],
                       chunk_size: int = CHUNK) -> int:
        """Write the asset to a path or a binary file-like; the number of bytes written."""
        return _save(self.iter_asset(project_id, task_id, asset, chunk_size), dest)

    def iter_raw_asset(self, project_id: int, task_id: TaskId, path: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """A file of the task's assets folder by its path, e.g. odm_orthophoto/odm_orthophoto.tif."""
        return self._iter_download(self._task_path(project_id, task_id, f"assets/{path.lstrip('/')}"), chunk_size)

    def download_raw_asset(self, project_id: int, task_id: TaskId, path: str, dest: str | os.PathLike | IO[bytes],
                           chunk_size: int = CHUNK) -> int:
        return _save(self.iter_raw_asset(project_id, task_id, path, chunk_size), dest)

    def _iter_download(self, path: str, chunk_size: int) -> Iterator[bytes]:
        # identity: Content-Length then counts the bytes we get, so a short read shows
        response = self._call("GET", path, stream=True, headers={"Accept-Encoding": "identity"})
        expected = response.headers.get("Content-Length")
        received = 0
        try:
            for chunk in response.iter_content(chunk_size):
                received += len(chunk)
                yield chunk
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"{VENDOR}: download of {path} broke off after {received} bytes",
                                 vendor=VENDOR) from exc
        finally:
            response.close()
        if expected is not None and received != int(expected):
            raise TransientError(f"{VENDOR}: download of {path} ended at {received} of {expected} bytes",
                                 vendor=VENDOR)

    def tiles_json(self, project_id: int, task_id: TaskId, layer: str = "orthophoto") -> dict:
        """TileJSON of the orthophoto or dsm layer; see tile_url_template() for its URL."""
        if layer not in ("orthophoto", "dsm", "dtm"):
            raise InputError(f"{VENDOR}: no tile layer {layer!r}", vendor=VENDOR, field="layer")
        return self._json("GET", self._task_path(project_id, task_id, f"{layer}/tiles.json"))

    def tile_url_template(self, tilejson: dict) -> str:
        """The absolute {z}/{x}/{y} URL of a TileJSON; it needs the token (header or ?jwt=)."""
        url = tilejson["tiles"][0]
        return self.base_url + url if url.startswith("/") else url

    # --- processing nodes ---

    def processing_nodes(self) -> list[dict]:
        return self._json("GET", "/api/processingnodes/")

    def available_options(self) -> list[dict]:
        """The options every online node accepts: [{name, type, value, domain, help}]."""
        return self._json("GET", "/api/processingnodes/options/")


# --- tokens ---

def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, read without verifying it (only the vendor can)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def _token_rejected(response: requests.Response) -> bool:
    return response.status_code in (401, 403) and _error_text(response)[0] in TOKEN_REJECTED


# --- errors ---

def _error_text(response: requests.Response) -> tuple[str, str | None]:
    """The server's message and the field it names, from DRF's shapes: {"detail": m},
    {"field": [m, ...]}, {"non_field_errors": [m]} or [m, ...]; else the text without markup."""
    try:
        body = response.json()
    except ValueError:
        text = re.sub(r"<[^>]+>", " ", response.text or "")
        return " ".join(text.split())[:300] or response.reason or "", None
    if isinstance(body, dict):
        if "detail" in body:
            return str(body["detail"]), None
        for key, value in body.items():
            messages = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
            return (messages, None) if key == "non_field_errors" else (f"{key}: {messages}", key)
    if isinstance(body, list):
        return "; ".join(map(str, body)), None
    return str(body), None


ERRORS_BY_STATUS = {400: InputError, 401: AuthError, 403: AuthError, 404: NotFound, 409: Conflict}


def _raise_for_status(response: requests.Response) -> None:
    if response.status_code < 400:
        return
    message, field = _error_text(response)
    error = ERRORS_BY_STATUS.get(response.status_code, VendorError)
    raise error(f"{VENDOR}: {message} (HTTP {response.status_code})", vendor=VENDOR,
                status=response.status_code, vendor_message=message, field=field)


# --- pagination ---

def _page_number(next_url: str | None) -> int | None:
    """The page `next` points at. Only its page number is used: the host in it is whatever the
    server believes it is called (http behind a TLS proxy), and the token must not go there."""
    if not next_url:
        return None
    page = dict(parse_qsl(urlsplit(next_url).query)).get("page")
    return int(page) if page and page.isdigit() else None


# --- task fields ---

def _task_fields(**fields: Any) -> dict:
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


def _form_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


# --- streamed multipart upload ---

class _ImageReader:
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


def _measure(filename: str, source: ImageSource) -> int:
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


def _image_readers(images: Iterable[ImageItem | str | os.PathLike]) -> list[_ImageReader]:
    readers = []
    for item in images:
        if isinstance(item, (str, os.PathLike)):
            item = (os.path.basename(item), item, os.path.getsize(item))
        filename, source, size = item
        readers.append(_ImageReader(filename, source, size))
    names = [r.filename for r in readers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:  # the vendor keeps one file per name: a duplicate would silently lose an image
        raise InputError(f"{VENDOR}: duplicate image filename(s): {', '.join(duplicates)}", vendor=VENDOR,
                         field="images")
    return readers


def _multipart(form: list[tuple[str, str]], readers: list[_ImageReader],
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


# --- saving downloads ---

def _save(chunks: Iterator[bytes], dest: str | os.PathLike | IO[bytes]) -> int:
    """Write chunks to a file-like, or to a path via a .part file renamed only when complete."""
    if hasattr(dest, "write"):
        return sum(dest.write(chunk) or len(chunk) for chunk in chunks)
    partial = f"{os.fspath(dest)}.part"
    try:
        with open(partial, "wb") as out:
            written = sum(out.write(chunk) for chunk in chunks)
        os.replace(partial, dest)
        return written
    finally:
        if os.path.exists(partial):
            os.remove(partial)
