"""The Mapillary client's connection: its hosts, the access token, and one call sent and retried
the fleet's way (vendors/http.py), its error answers typed by `error_from_response`."""
from __future__ import annotations

from typing import Any

import requests

from vendors.errors import TransientError
from vendors.http import Retries, new_session, send
from vendors.mapillary.errors import VENDOR, error_from_response
from vendors.mapillary.tiles import COVERAGE_TILESET

GRAPH_URL = "https://graph.mapillary.com"
TILES_URL = "https://tiles.mapillary.com"
UPLOAD_URL = "https://rupload.facebook.com"
LEGACY_UPLOAD_URL = "https://s3-eu-west-1.amazonaws.com/mapillary.uploads.manual.images"

UPLOAD_CHUNK_SIZE = 2 * 1024 * 1024     # mapillary_tools' chunk size; only affects progress granularity


class MapillaryConnection:
    """What every part of MapillaryClient calls through: the hosts, the session and the retries."""

    def __init__(self, graph_url: str, tiles_url: str, upload_url: str, access_token: str, *,
                 timeout: float = 60.0, legacy_upload_url: str | None = None, tileset: str = COVERAGE_TILESET,
                 upload_chunk_size: int = UPLOAD_CHUNK_SIZE, session: requests.Session | None = None,
                 retries: Retries = Retries()) -> None:
        self.graph_url = graph_url.rstrip("/")
        self.tiles_url = tiles_url.rstrip("/")
        self.upload_url = upload_url.rstrip("/")
        self.legacy_upload_url = legacy_upload_url or LEGACY_UPLOAD_URL
        self.timeout = timeout
        self.tileset = tileset
        self.upload_chunk_size = upload_chunk_size
        self.retries = retries
        self.session = session or new_session()
        self._access_token = access_token

    def _auth(self) -> dict[str, str]:
        # The header, never ?access_token=: tokens stay out of URLs and logs.
        return {"Authorization": f"OAuth {self._access_token}"}

    def _send(self, method: str, url: str, *, timeout: float | None = None, **kwargs: Any) -> requests.Response:
        try:
            return send(self.session, method, url, vendor=VENDOR, timeout=timeout or self.timeout,
                        check_status=False, **kwargs)
        except requests.RequestException as exc:  # what send() leaves out, e.g. a body cut mid-stream
            raise TransientError(f"{VENDOR}: transfer failed ({type(exc).__name__})", vendor=VENDOR) from exc

    def _call(self, method: str, url: str, what: str, *, retried: bool = True, **kwargs: Any) -> requests.Response:
        """One call, retried where it failed (a POST, which creates, only when Mapillary answered).
        `retried=False` for a body that cannot be sent twice: its caller resumes it."""
        def once() -> requests.Response:
            headers = {**self._auth(), **kwargs.get("headers", {})}
            response = self._send(method, url, **{**kwargs, "headers": headers})
            if response.status_code != 200:
                raise error_from_response(response, what)
            return response

        return self.retries.run(once, idempotent=method == "GET") if retried else once()
