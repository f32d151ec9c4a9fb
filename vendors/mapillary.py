"""Mapillary client: Graph API v4 reads, coverage vector tiles, CDN downloads and uploads
(the current offset-resumable protocol and the legacy S3 form POST). Plain HTTP; no Celery.

The three hosts are separate base URLs so the sandbox and the real service are interchangeable:
graph (graph.mapillary.com), tiles (tiles.mapillary.com) and upload (rupload.facebook.com).
Every error becomes a typed error once, in `error_from_response`, so the task layer can decide
about retries from the type alone. What it relies on is in docs/vendors/mapillary.md.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import tempfile
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Callable, Iterable, Iterator, Sequence, Union

import mapbox_vector_tile
import requests

from vendors.errors import AuthError, InputError, NotFound, RateLimited, TransientError, VendorError
from vendors.http import Retries, new_session, retry_after_seconds, send

VENDOR = "mapillary"

GRAPH_URL = "https://graph.mapillary.com"
TILES_URL = "https://tiles.mapillary.com"
UPLOAD_URL = "https://rupload.facebook.com"
LEGACY_UPLOAD_URL = "https://s3-eu-west-1.amazonaws.com/mapillary.uploads.manual.images"
UPLOAD_PATH = "mapillary_public_uploads"

# The toolset's default metadata fields, plus geometry.
DEFAULT_IMAGE_FIELDS = ("id", "sequence", "captured_at", "compass_angle", "geometry",
                        "thumb_256_url", "thumb_original_url", "width", "height")
MAX_IDS_PER_BATCH = 50          # the SDK refuses more; 50 ids keep the URL short
THUMBNAIL_RESOLUTIONS = ("256", "1024", "2048", "original")

AUTH_ERROR_CODE = 190
USER_TOKEN_REQUIRED_CODE = 2500                  # Graph convention: an app token where a user token is needed
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})   # app, user, page and "calls within one hour" limits
MISSING_ALIASES_CODE = 803
NONEXISTENT_CODE, NONEXISTENT_SUBCODE = 100, 33

COVERAGE_TILESET = "mly1_public"
OVERVIEW_MAX_ZOOM = 5           # overview: z0-5, no organization_id
SEQUENCE_MIN_ZOOM = 6           # sequence: z6-14
IMAGE_ZOOM = 14                 # image: z14 only
MAX_LATITUDE = 85.0511287798

UPLOAD_CHUNK_SIZE = 2 * 1024 * 1024     # mapillary_tools' chunk size; only affects progress granularity
MIN_UPLOAD_SPEED = 50 * 1024            # bytes/s: the read timeout grows with what is left to send
CLUSTER_FILE_TYPES = ("zip", "mly_blackvue_video", "mly_camm_video", "mly_bundle_manifest")
ENTITY_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".zip": "application/zip",
                ".mp4": "video/mp4", ".json": "application/json"}
LEGACY_AWS_ACCESS_KEY_ID = "AKIAI2X3BJAT2W75HILA"   # the documented fixed value, not a secret

Bbox = tuple[float, float, float, float]       # min_lon, min_lat, max_lon, max_lat
Source = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]
Progress = Callable[[int, int], None]          # (bytes the server holds, total bytes)


# --- typed errors ---

class MapillaryError(VendorError):
    """A Mapillary call that failed, keeping the vendor's error envelope (message, type, code, fbtrace_id)."""

    def __init__(self, message: str, *, code: int | None = None, error_type: str | None = None,
                 error_subcode: int | None = None, fbtrace_id: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("vendor", VENDOR)
        super().__init__(message, **kwargs)
        self.code = code
        self.type = error_type
        self.error_subcode = error_subcode
        self.fbtrace_id = fbtrace_id

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for key in ("code", "type", "error_subcode", "fbtrace_id"):
            if getattr(self, key, None) is not None:
                data[f"vendor_{key}" if key == "type" else key] = getattr(self, key)
        return data


class MapillaryAuthError(MapillaryError, AuthError):
    """Code 190 (whatever the HTTP status, even 500), 401/403, or the upload service's NotAuthorizedError."""


class MapillaryInputError(MapillaryError, InputError):
    """The request was refused as sent; repeating it will not help."""


class MapillaryNotFound(MapillaryError, NotFound):
    """An id does not resolve. `missing_ids` names them when the vendor said which."""

    missing_ids: Sequence[str] = ()


class MapillaryTransientError(MapillaryError, TransientError):
    """5xx without code 190, an offset conflict (412) or another error the vendor marks retriable."""


class MapillaryRateLimited(MapillaryError, RateLimited):
    """HTTP 429, Graph codes 4/17/32/613, or RequestRateLimitedError.
    `retry_after` comes from the body's `backoff` (milliseconds) or else the Retry-After header."""


class ExpiredUrl(MapillaryError):
    """A signed CDN URL was refused (expired or tampered): fetch the image's metadata again for a fresh URL."""


def _body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: requests.Response, body: dict[str, Any]) -> float | None:
    backoff = body.get("backoff")
    if isinstance(backoff, (int, float)) and backoff >= 0:
        return backoff / 1000.0
    return retry_after_seconds(response)


def _missing_ids(message: str) -> list[str]:
    batch = re.search(r"do not exist:\s*([\w,\s]+)", message)
    if batch:
        return [i.strip() for i in batch.group(1).split(",") if i.strip()]
    single = re.search(r"Object with ID '([^']+)'", message)
    return [single.group(1)] if single else []


def error_from_response(response: requests.Response, what: str) -> MapillaryError:
    """The typed error for a failed Graph, tiles or upload-service response."""
    status, body = response.status_code, _body(response)
    envelope = body.get("error") if isinstance(body.get("error"), dict) else {}
    debug = body.get("debug_info") if isinstance(body.get("debug_info"), dict) else {}
    code, subcode = envelope.get("code"), envelope.get("error_subcode")
    vendor_message = envelope.get("message") or debug.get("message") or response.text[:500]
    details = {"status": status, "vendor_message": vendor_message, "code": code, "error_subcode": subcode,
               "error_type": envelope.get("type") or debug.get("type"), "fbtrace_id": envelope.get("fbtrace_id")}
    message = f"mapillary: {what} failed (HTTP {status}{f', code {code}' if code is not None else ''}): {vendor_message}"

    # Code 190 first: the vendor sometimes sends it with HTTP 500, and it must not be retried.
    if code in (AUTH_ERROR_CODE, USER_TOKEN_REQUIRED_CODE) or debug.get("type") == "NotAuthorizedError" \
            or status in (401, 403):
        return MapillaryAuthError(message, **details)
    if status == 429 or code in RATE_LIMIT_CODES or debug.get("type") == "RequestRateLimitedError":
        return MapillaryRateLimited(message, retry_after=_retry_after(response, body), **details)
    if code == MISSING_ALIASES_CODE or (code == NONEXISTENT_CODE and subcode == NONEXISTENT_SUBCODE) or status == 404:
        error = MapillaryNotFound(message, **details)
        error.missing_ids = _missing_ids(vendor_message)
        return error
    if status >= 500 or debug.get("retriable") is True or envelope.get("is_transient") is True:
        return MapillaryTransientError(message, retry_after=retry_after_seconds(response), **details)
    return MapillaryInputError(message, **details)


def legacy_error_from_response(response: requests.Response) -> MapillaryError:
    """The typed error for an S3 XML error answer to the legacy form upload."""
    try:
        root = ElementTree.fromstring(response.content)
        code, text = root.findtext("Code") or "", root.findtext("Message") or ""
    except ElementTree.ParseError:
        code, text = "", response.text[:500]
    status = response.status_code
    message = f"mapillary: legacy upload failed (HTTP {status} {code}): {text}"
    details = {"status": status, "vendor_message": text, "error_type": code or None}
    if status in (401, 403):
        return MapillaryAuthError(message, **details)
    if status == 503 and code == "SlowDown":
        return MapillaryRateLimited(message, retry_after=retry_after_seconds(response), **details)
    if status >= 500 or status == 429:
        return MapillaryTransientError(message, retry_after=retry_after_seconds(response), **details)
    return MapillaryInputError(message, **details)


# --- tile math (Web Mercator slippy-map tiles) ---

def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The x, y of the tile at zoom z that holds a point."""
    n = 2 ** z
    lat = max(-MAX_LATITUDE, min(MAX_LATITUDE, lat))
    x = (lon + 180.0) / 360.0 * n
    y = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n
    return min(n - 1, max(0, int(x))), min(n - 1, max(0, int(y)))


def tile_bounds(z: int, x: int, y: int) -> Bbox:
    """A tile's (west, south, east, north) in degrees."""
    west, north = tile_local_to_lonlat(0, 0, z, x, y)
    east, south = tile_local_to_lonlat(1, 1, z, x, y, extent=1)
    return west, south, east, north


def tile_local_to_lonlat(px: float, py: float, z: int, x: int, y: int, extent: int = 4096) -> tuple[float, float]:
    """A tile-local MVT coordinate (origin top-left, y down, 0..extent) as lon/lat."""
    n = 2 ** z
    gx, gy = (x + px / extent) / n, (y + py / extent) / n
    return gx * 360.0 - 180.0, math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * gy))))


def tiles_covering_bbox(bbox: Bbox, z: int) -> list[tuple[int, int, int]]:
    """Every z/x/y tile at zoom z that intersects bbox, row by row."""
    west, south, east, north = bbox
    if west > east or south > north:
        raise ValueError(f"bbox must be (min_lon, min_lat, max_lon, max_lat), got {bbox}")
    x0, y0 = lonlat_to_tile(west, north, z)
    x1, y1 = lonlat_to_tile(east, south, z)
    return [(z, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def child_tiles(z: int, x: int, y: int) -> list[tuple[int, int, int]]:
    return [(z + 1, 2 * x + dx, 2 * y + dy) for dy in (0, 1) for dx in (0, 1)]


def bbox_intersects(a: Bbox, b: Bbox) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def in_bbox(lon: float, lat: float, bbox: Bbox) -> bool:
    return bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]


# --- decoded coverage ---

def _id(value: Any) -> str | None:
    """Tiles carry ids as integers, Graph as strings: harvest with strings throughout."""
    return None if value is None else str(value)


@dataclass(frozen=True)
class TileImage:
    """An image point from the `image` layer (z14) or the `overview` layer (z0-5)."""
    id: str
    sequence_id: str
    captured_at: int
    is_pano: bool
    lon: float
    lat: float
    compass_angle: float | None = None
    organization_id: str | None = None
    creator_id: str | None = None


@dataclass(frozen=True)
class TileSequence:
    """A sequence line from the `sequence` layer (z6-14), clipped to the tile (so possibly in parts)."""
    id: str
    image_id: str
    captured_at: int
    is_pano: bool
    lines: tuple[tuple[tuple[float, float], ...], ...]
    organization_id: str | None = None
    creator_id: str | None = None


@dataclass(frozen=True)
class CoverageTile:
    z: int
    x: int
    y: int
    overview: tuple[TileImage, ...]
    sequences: tuple[TileSequence, ...]
    images: tuple[TileImage, ...]

    @property
    def bounds(self) -> Bbox:
        return tile_bounds(self.z, self.x, self.y)

    def has_organization(self, organization_id: str) -> bool:
        wanted = str(organization_id)
        return any(s.organization_id == wanted for s in self.sequences) or \
            any(i.organization_id == wanted for i in self.images)


def decode_coverage_tile(data: bytes, z: int, x: int, y: int) -> CoverageTile:
    """Decode mly1_public MVT bytes with mapbox_vector_tile; geometry comes back as lon/lat."""
    layers = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True}) if data else {}

    def lonlat(point, extent):
        return tile_local_to_lonlat(point[0], point[1], z, x, y, extent)

    def points(name: str) -> tuple[TileImage, ...]:
        layer = layers.get(name, {"features": [], "extent": 4096})
        found = []
        for feature in layer["features"]:
            p, geometry = feature["properties"], feature["geometry"]
            coords = [geometry["coordinates"]] if geometry["type"] == "Point" else geometry["coordinates"]
            for point in coords:
                lon, lat = lonlat(point, layer["extent"])
                found.append(TileImage(
                    id=_id(p["id"]), sequence_id=_id(p.get("sequence_id")), captured_at=int(p.get("captured_at", 0)),
                    is_pano=bool(p.get("is_pano", False)), lon=lon, lat=lat, compass_angle=p.get("compass_angle"),
                    organization_id=_id(p.get("organization_id")), creator_id=_id(p.get("creator_id"))))
        return tuple(found)

    sequences = []
    layer = layers.get("sequence", {"features": [], "extent": 4096})
    for feature in layer["features"]:
        p, geometry = feature["properties"], feature["geometry"]
        parts = [geometry["coordinates"]] if geometry["type"] == "LineString" else geometry["coordinates"]
        lines = tuple(tuple(lonlat(pt, layer["extent"]) for pt in part) for part in parts)
        sequences.append(TileSequence(
            id=_id(p["id"]), image_id=_id(p.get("image_id")), captured_at=int(p.get("captured_at", 0)),
            is_pano=bool(p.get("is_pano", False)), lines=lines,
            organization_id=_id(p.get("organization_id")), creator_id=_id(p.get("creator_id"))))
    return CoverageTile(z, x, y, points("overview"), tuple(sequences), points("image"))


# --- legacy upload credentials ---

@dataclass(frozen=True, repr=False)
class LegacyUploadCredentials:
    """The account's "upload from script" values; from configuration, never from code."""
    username: str
    permission_hash: str
    signature_hash: str
    aws_access_key_id: str = LEGACY_AWS_ACCESS_KEY_ID

    def __repr__(self) -> str:  # keep the hashes out of logs and tracebacks
        return f"LegacyUploadCredentials(username={self.username!r}, hashes=<hidden>)"


# --- sources of bytes to upload ---

@contextlib.contextmanager
def _open_source(source: Source) -> Iterator[tuple[IO[bytes], int]]:
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


def content_md5(source: Source) -> str:
    with _open_source(source) as (stream, _):
        digest = hashlib.md5()
        for chunk in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(chunk)
        return digest.hexdigest()


def upload_session_key(source: Source, extension: str) -> str:
    """mapillary_tools' deterministic session key, `mly_tools_<md5><ext>`: the same content resumes the same session."""
    return f"mly_tools_{content_md5(source)}{extension if extension.startswith('.') else '.' + extension}"


# --- the client ---

class MapillaryClient:
    """One small class over Mapillary's three hosts. Methods raise MapillaryError subclasses
    (which are also the shared AuthError / InputError / NotFound / TransientError / RateLimited)."""

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

    @classmethod
    def production(cls, access_token: str, **kwargs: Any) -> "MapillaryClient":
        return cls(GRAPH_URL, TILES_URL, UPLOAD_URL, access_token, **kwargs)

    def __repr__(self) -> str:
        return f"MapillaryClient(graph_url={self.graph_url!r})"

    # --- plumbing ---
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

    def _graph(self, path: str, what: str, **params: Any) -> Any:
        return self._call("GET", f"{self.graph_url}/{path}", what, params=params).json()

    @staticmethod
    def _fields(fields: Iterable[str]) -> str:
        return ",".join(dict.fromkeys(["id", *fields]))

    # --- Graph API ---
    def get_image(self, image_id: str, fields: Iterable[str] = DEFAULT_IMAGE_FIELDS) -> dict[str, Any]:
        """An image's metadata; fields the image lacks (e.g. computed_compass_angle) are absent."""
        return self._graph(str(image_id), f"image {image_id}", fields=self._fields(fields))

    def get_images(self, image_ids: Sequence[str],
                   fields: Iterable[str] = DEFAULT_IMAGE_FIELDS) -> dict[str, dict[str, Any]]:
        """Metadata of 1-50 images in one call, keyed by id. One missing id fails the whole
        batch (MapillaryNotFound, with `missing_ids`); see get_images_skipping_missing."""
        ids = [str(i) for i in image_ids]
        if not 1 <= len(ids) <= MAX_IDS_PER_BATCH:
            raise MapillaryInputError(f"mapillary: a batch takes 1 to {MAX_IDS_PER_BATCH} ids, got {len(ids)}")
        return self._graph("", f"batch of {len(ids)} images", ids=",".join(ids), fields=self._fields(fields))

    def get_images_skipping_missing(self, image_ids: Sequence[str], fields: Iterable[str] = DEFAULT_IMAGE_FIELDS
                                    ) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """A batch that survives deleted images: returns (found by id, ids that do not exist)."""
        fields = tuple(fields)
        ids = [str(i) for i in image_ids]
        try:
            return self.get_images(ids, fields), []
        except MapillaryNotFound as error:
            named = [i for i in error.missing_ids if i in ids]
        if named:
            rest = [i for i in ids if i not in named]
            found, missing = self.get_images_skipping_missing(rest, fields) if rest else ({}, [])
            return found, named + missing
        # The vendor did not say which: one call per id, as the toolset falls back to.
        found, missing = {}, []
        for image_id in ids:
            try:
                found[image_id] = self.get_image(image_id, fields)
            except MapillaryNotFound:
                missing.append(image_id)
        return found, missing

    def image_ids_of_sequence(self, sequence_id: str) -> list[str]:
        """The sequence's image ids in capture order."""
        body = self._graph("image_ids", f"image ids of sequence {sequence_id}", sequence_id=sequence_id)
        return [str(item["id"]) for item in body.get("data", [])]

    def search_images(self, bbox: Bbox | None = None, *, fields: Iterable[str] = DEFAULT_IMAGE_FIELDS,
                      limit: int | None = None, **filters: Any) -> list[dict[str, Any]]:
        """GET /images: at most 2000 results (newest first); split the bbox for more.
        Filters: organization_id, creator_id, creator_username, sequence_id, is_pano, make, model,
        start_captured_at / end_captured_at (ISO 8601), lat + lng + radius (<= 50 m)."""
        params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in filters.items() if v is not None}
        if bbox is not None:
            params["bbox"] = ",".join(f"{v:.8f}" for v in bbox)
        if limit is not None:
            params["limit"] = limit
        return self._graph("images", "image search", fields=self._fields(fields), **params).get("data", [])

    def me(self, fields: Iterable[str] = ("id", "username")) -> dict[str, Any]:
        return self._graph("me", "current user", fields=self._fields(fields))

    def get_organization(self, organization_id: str,
                         fields: Iterable[str] = ("slug", "name", "description")) -> dict[str, Any]:
        return self._graph(str(organization_id), f"organization {organization_id}", fields=self._fields(fields))

    # --- coverage tiles ---
    def get_tile(self, z: int, x: int, y: int) -> bytes:
        url = f"{self.tiles_url}/maps/vtp/{self.tileset}/2/{z}/{x}/{y}"
        return self._call("GET", url, f"tile {z}/{x}/{y}").content

    def coverage_tile(self, z: int, x: int, y: int) -> CoverageTile:
        return decode_coverage_tile(self.get_tile(z, x, y), z, x, y)

    def walk_coverage(self, bbox: Bbox, organization_id: str | None = None, *, start_zoom: int = 12,
                      target_zoom: int = IMAGE_ZOOM) -> Iterator[CoverageTile]:
        """The target-zoom tiles over bbox, reached by drilling down from start_zoom and only into
        tiles whose sequence layer holds the organization (the overview layer has no organization,
        so start_zoom must be 6 or more when filtering)."""
        if organization_id is not None and start_zoom < SEQUENCE_MIN_ZOOM:
            raise ValueError("the overview layer (z0-5) has no organization_id: start at z6 or deeper")
        pending = tiles_covering_bbox(bbox, start_zoom)
        while pending:
            z, x, y = pending.pop(0)
            tile = self.coverage_tile(z, x, y)
            if organization_id is not None and not tile.has_organization(organization_id):
                continue
            if z >= target_zoom:
                yield tile
            else:
                pending.extend(c for c in child_tiles(z, x, y) if bbox_intersects(tile_bounds(*c), bbox))

    def images_in_bbox(self, bbox: Bbox, organization_id: str | None = None, *, start_zoom: int = 12) -> list[TileImage]:
        """The z14 image points in bbox (of one organization), each once."""
        seen: dict[str, TileImage] = {}
        for tile in self.walk_coverage(bbox, organization_id, start_zoom=start_zoom):
            for image in tile.images:
                if in_bbox(image.lon, image.lat, bbox) and \
                        (organization_id is None or image.organization_id == str(organization_id)):
                    seen.setdefault(image.id, image)
        return list(seen.values())

    def sequences_in_bbox(self, bbox: Bbox, organization_id: str | None = None, *, start_zoom: int = 12) -> list[str]:
        """Ids of the sequences with images in bbox (of one organization): the toolset's seq_dataset."""
        return sorted({i.sequence_id for i in self.images_in_bbox(bbox, organization_id, start_zoom=start_zoom)})

    # --- downloads (CDN: no token goes there) ---
    def download(self, url: str, destination: str | os.PathLike | BinaryIO, *, chunk_size: int = 1024 * 1024) -> int:
        """Stream a thumbnail/original URL to a path (written atomically) or a binary file; returns bytes
        written. A failed try starts again from the beginning of the destination."""
        start = None if isinstance(destination, (str, os.PathLike)) else destination.tell()

        def once() -> int:
            if start is not None:
                destination.seek(start)
                destination.truncate()
            return self._download_once(url, destination, chunk_size)

        return self.retries.run(once)

    def _download_once(self, url: str, destination: str | os.PathLike | BinaryIO, chunk_size: int) -> int:
        response = self._send("GET", url, stream=True)
        with response:
            if response.status_code == 403:
                raise ExpiredUrl(f"mapillary: CDN refused the URL (HTTP 403): {response.text[:200]}",
                                 status=403, vendor_message=response.text[:200])
            if response.status_code != 200:
                raise error_from_response(response, "download")
            if not isinstance(destination, (str, os.PathLike)):
                return self._copy(response, destination, chunk_size)
            folder = os.path.dirname(os.path.abspath(destination))
            fd, partial = tempfile.mkstemp(dir=folder, prefix=".partial-")
            try:
                with os.fdopen(fd, "wb") as out:
                    written = self._copy(response, out, chunk_size)
                os.replace(partial, destination)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(partial)
                raise
            return written

    @staticmethod
    def _copy(response: requests.Response, out: IO[bytes], chunk_size: int) -> int:
        written = 0
        try:
            for chunk in response.iter_content(chunk_size):
                out.write(chunk)
                written += len(chunk)
        except requests.RequestException as exc:
            raise TransientError(f"{VENDOR}: download cut off after {written} bytes", vendor=VENDOR) from exc
        return written

    def download_image(self, image_id: str, destination: str | os.PathLike | BinaryIO,
                       resolution: str = "1024") -> int:
        """Resolve a fresh URL (they expire) and download it; one more fresh URL if the CDN refuses."""
        if str(resolution) not in THUMBNAIL_RESOLUTIONS:
            raise MapillaryInputError(f"mapillary: resolution must be one of {', '.join(THUMBNAIL_RESOLUTIONS)}")
        field = f"thumb_{resolution}_url"
        for attempt in (1, 2):
            url = self.get_image(image_id, [field]).get(field)
            if not url:
                raise MapillaryNotFound(f"mapillary: image {image_id} has no {field}", status=200)
            try:
                return self.download(url, destination)
            except ExpiredUrl:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # --- uploads: the offset-resumable protocol ---
    def _upload_endpoint(self, session_key: str) -> str:
        return f"{self.upload_url}/{UPLOAD_PATH}/{session_key}"

    def fetch_upload_offset(self, session_key: str) -> int:
        """How many bytes of the session the server already holds."""
        response = self._call("GET", self._upload_endpoint(session_key), f"upload offset of {session_key}")
        return int(response.json()["offset"])

    def upload(self, session_key: str, source: Source, *, entity_type: str | None = None,
               progress: Progress | None = None) -> str:
        """Upload bytes under a session key and return the file handle ("h").

        Every try asks the server for its offset first and sends only the rest, so a try after a
        crash, a dropped connection, a 5xx or a 429 continues the session instead of sending again."""
        entity_type = entity_type or ENTITY_TYPES.get(os.path.splitext(session_key)[1].lower(), "application/octet-stream")
        with _open_source(source) as (stream, size):
            def once() -> str:
                offset = self.fetch_upload_offset(session_key)
                if offset > size:
                    raise MapillaryInputError(f"mapillary: session {session_key} holds {offset} bytes, more than "
                                              f"the {size} to upload: the key names other content")
                return self._upload_from(session_key, stream, size, offset, entity_type, progress)

            return self.retries.run(once)

    def _upload_from(self, session_key: str, stream: IO[bytes], size: int, offset: int, entity_type: str,
                     progress: Progress | None) -> str:
        stream.seek(offset)
        if progress:
            progress(offset, size)

        def body() -> Iterator[bytes]:
            sent = offset
            for chunk in iter(lambda: stream.read(self.upload_chunk_size), b""):
                yield chunk
                sent += len(chunk)
                if progress:
                    progress(sent, size)

        headers = {"Offset": str(offset), "X-Entity-Name": session_key, "X-Entity-Length": str(size),
                   "X-Entity-Type": entity_type}
        read_timeout = max(self.timeout, (size - offset) / MIN_UPLOAD_SPEED)
        response = self._call("POST", self._upload_endpoint(session_key), f"upload of {session_key}",
                              headers=headers, data=body(), timeout=read_timeout, retried=False)
        return str(response.json()["h"])

    def finish_upload(self, file_handle: str, file_type: str, organization_id: str | None = None) -> str:
        """Commit an uploaded file (zip, video or image-bundle manifest); returns the cluster id.
        The cluster id is not a sequence id: images appear in the API only after processing."""
        if file_type not in CLUSTER_FILE_TYPES:
            raise MapillaryInputError(f"mapillary: file_type must be one of {', '.join(CLUSTER_FILE_TYPES)}")
        payload: dict[str, Any] = {"file_handle": file_handle, "file_type": file_type}
        if organization_id is not None:
            payload["organization_id"] = str(organization_id)
        response = self._call("POST", f"{self.graph_url}/finish_upload", f"finish_upload of {file_handle}", json=payload)
        return str(response.json()["cluster_id"])

    @staticmethod
    def image_manifest(image_handles: Sequence[str]) -> bytes:
        """The manifest that bundles uploaded images into one cluster (finished as mly_bundle_manifest)."""
        return json.dumps({"version": "1", "upload_type": "images", "image_handles": list(image_handles)},
                          separators=(",", ":")).encode()

    def upload_image_bundle(self, image_handles: Sequence[str], organization_id: str | None = None) -> str:
        """Upload the manifest for already-uploaded images and finish it; returns the cluster id.
        The manifest's key derives from its content, so a repeat resumes instead of duplicating."""
        manifest = self.image_manifest(image_handles)
        handle = self.upload(upload_session_key(manifest, ".json"), manifest, entity_type="application/json")
        return self.finish_upload(handle, "mly_bundle_manifest", organization_id)

    # --- uploads: the legacy S3 form POST ---
    def legacy_upload(self, source: Source, filename: str, credentials: LegacyUploadCredentials,
                      sequence_uuid: str | uuid.UUID) -> str:
        """POST one image (or the empty DONE marker) with the fields in the documented order;
        returns its key {username}/{uuid}/{filename}. Success is HTTP 204. A second POST of the same
        key replaces the object, so a failed try is simply made again."""
        key = f"{credentials.username}/{uuid.UUID(str(sequence_uuid))}/{filename}"
        with _open_source(source) as (stream, _):
            def once() -> str:
                stream.seek(0)
                fields = [  # a list, not a dict: the order is part of the contract
                    ("AWSAccessKeyId", (None, credentials.aws_access_key_id)),
                    ("acl", (None, "private")),
                    ("key", (None, key)),
                    ("signature", (None, credentials.signature_hash)),
                    ("policy", (None, credentials.permission_hash)),
                    ("Content-Type", (None, "image/jpeg")),
                    ("file", (filename, stream, "image/jpeg")),
                ]
                response = self._send("POST", self.legacy_upload_url, files=fields)
                if response.status_code != 204:
                    raise legacy_error_from_response(response)
                return key

            return self.retries.run(once)

    def legacy_finish_sequence(self, credentials: LegacyUploadCredentials, sequence_uuid: str | uuid.UUID) -> str:
        """Mark a legacy sequence complete by uploading the empty DONE object."""
        return self.legacy_upload(b"", "DONE", credentials, sequence_uuid)
