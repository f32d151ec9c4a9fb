"""Immersal REST API client: workspace images -> map construction -> download, localize, ECEF.

Every call is a POST whose JSON body carries the developer token. The vendor reports the outcome
in the body: `"error": "none"` is success whatever the HTTP status, anything else is an error
string we keep as `ImmersalError.code`. Transport failures, 5xx and 429 are TransientError.

Map names: letters and digits only (A-Z, a-z, 0-9), no spaces, dashes or underscores, as the
vendor's own mapping script states; the server answers "name" otherwise.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import numbers
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from vendors.errors import AuthError, Conflict, InputError, NotFound, TransientError, VendorError
from vendors.http import Retries, new_session, raise_for_transient, send
from vendors.tokens import MemoryTokenStore, TokenStore

VENDOR = "immersal"
DEFAULT_BASE_URL = "https://api.immersal.com"

# Map (job) states; the SDK writes them lowercase, the vendor's docstrings capitalised.
PENDING, PROCESSING, SPARSE, DONE, FAILED = "pending", "processing", "sparse", "done", "failed"
LOCALIZABLE = frozenset({SPARSE, DONE})     # the .bytes map exists from "sparse" on
FINISHED = frozenset({DONE, FAILED})        # nothing changes any more

MAX_LOCALIZE_MAPS = 8
CREATING_ENDPOINTS = frozenset({"construct", "fuse", "restore"})
MAP_NAME = re.compile(r"[A-Za-z0-9]+")
# Construction options the vendor documents, passed through as given (windowSize has its own argument).
CONSTRUCT_OPTIONS = frozenset({
    "featureCount", "featureCountMax", "featureType", "featureFilter", "preservePoses", "mapTrim",
    "compressionLevel", "dense", "trackLengthMin", "triangulationDistanceMax",
})
IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
TOKEN_CACHE_SECONDS = 12 * 3600             # developer tokens do not expire; re-login twice a day anyway


class ImmersalError(VendorError):
    """The body's `error` was not "none"; `code` is the vendor's string ("auth", "job", ...)."""

    def __init__(self, message: str, *, code: str, **kwargs: Any) -> None:
        kwargs.setdefault("vendor", VENDOR)
        kwargs.setdefault("vendor_message", code)
        super().__init__(message, **kwargs)
        self.code = code


class ImmersalAuthError(ImmersalError, AuthError):
    """"auth": the developer token or the login was refused."""


class ImmersalNotFound(ImmersalError, NotFound):
    """"not found" (mapb64, ecef, metadataget) or "job" (restore): no such map for this token."""


class ImmersalInputError(ImmersalError, InputError):
    """"map count" (no valid map among the ids) or "name" (map name refused)."""


class ImmersalConflict(ImmersalError, Conflict):
    """"image limit": the workspace already holds imageMax images (string seen in our sandbox only)."""


class ImmersalConnError(ImmersalError, TransientError):
    """"conn": no readable answer (the SDK's name for it), or map bytes that fail their sha256; worth a retry."""


ERRORS_BY_CODE: dict[str, type[ImmersalError]] = {
    "auth": ImmersalAuthError,
    "not found": ImmersalNotFound,
    "job": ImmersalNotFound,
    "map count": ImmersalInputError,
    "name": ImmersalInputError,
    "image limit": ImmersalConflict,
    "conn": ImmersalConnError,
}


def normalize_status(status: Any) -> str:
    return str(status).strip().lower()


class ImmersalClient:
    """One Immersal account. The token comes from `token`, or from /login with `login`/`password`
    (cached in `token_store`); with neither, calls go out anonymously (public maps only)."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, token: str | None = None, login: str | None = None,
                 password: str | None = None, token_store: TokenStore | None = None, timeout: float = 60.0,
                 retries: Retries = Retries()) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._login = login
        self._password = password
        self.token_store = token_store or MemoryTokenStore()
        self.token_cache_key = f"{VENDOR}:{self.base_url}:{login or ''}"
        self.timeout = timeout
        self.retries = retries
        self.session = new_session()

    # --- account ---
    def login(self) -> str:
        """Exchange login/password for the developer token and cache it."""
        if not (self._login and self._password):
            raise InputError("immersal: login needs both login and password", vendor=VENDOR, field="login")
        body = self._post("login", {"login": self._login, "password": self._password})
        token = str(body["token"])
        self.token_store.put(self.token_cache_key, token, TOKEN_CACHE_SECONDS)
        return token

    def status(self, bank: int = 0) -> dict:
        """imageCount, imageMax, bankMax, eulaAccepted of the account's workspace `bank`."""
        return self._call("status", {"bank": _index(bank, "bank")})

    def clear(self, *, anchor: bool, bank: int = 0) -> None:
        """Empty the workspace; `anchor=False` keeps the anchor image, `True` removes it too."""
        self._call("clear", {"bank": _index(bank, "bank"), "anchor": bool(anchor)})

    def restore(self, map_id: int, *, clear: bool = False) -> None:
        """Put a map's images back into the workspace, after emptying it when `clear`."""
        self._call("restore", {"id": _map_id(map_id, "map_id"), "clear": bool(clear)})

    # --- maps ---
    def list_jobs(self, bank: int = 0) -> list[dict]:
        """All the account's maps (jobs), newest first as the vendor sends them."""
        return _jobs(self._call("list", {"bank": _index(bank, "bank")}))

    def geolist(self, latitude: float, longitude: float, radius: float, bank: int = 0) -> list[dict]:
        """Maps within `radius` metres of a WGS84 point."""
        _check_gps(latitude, longitude, 0.0)
        if not _finite(radius) or radius <= 0:
            raise InputError("immersal: radius must be a positive number of metres", vendor=VENDOR, field="radius")
        fields = {"bank": _index(bank, "bank"), "latitude": float(latitude), "longitude": float(longitude),
                  "radius": float(radius)}
        return _jobs(self._call("geolist", fields))

    def metadata(self, map_id: int) -> dict:
        """A map's metadata (/metadataget), `status` lowercased."""
        body = self._call("metadataget", {"id": _map_id(map_id, "map_id")})
        body["status"] = normalize_status(body.get("status", ""))
        return body

    def map_status(self, map_id: int) -> str:
        """One of PENDING, PROCESSING, SPARSE, DONE, FAILED."""
        return self.metadata(map_id)["status"]

    def set_privacy(self, map_id: int, public: bool) -> None:
        """Public maps can be downloaded and localized against without this account's token."""
        self._call("privacy", {"id": _map_id(map_id, "map_id"), "privacy": 1 if public else 0})

    # --- images and construction ---
    def capture(self, image: bytes, *, run: int, index: int, position: Sequence[float] = (0.0, 0.0, 0.0),
                rotation: Sequence[Sequence[float]] = IDENTITY, intrinsics: Sequence[float],
                gps: Sequence[float] | None = None, anchor: bool = False, bank: int = 0,
                in_flight: Callable[[bool], None] | None = None, retry_cut_off: bool = True) -> str:
        """Submit one PNG/JPEG to the workspace (binary /capture); returns the vendor's path.
        A second submission with the same (run, index) replaces the first. `in_flight(True)` is called
        when a request has left whole, `in_flight(False)` when its answer came: cut off in between,
        the vendor has the image (unless it was refusing it). With `retry_cut_off` False, a call cut
        off is not tried again here (only one Immersal answered is): the caller settles it."""
        fields = _capture_fields(image, run, index, position, rotation, intrinsics, gps, anchor, bank)
        return str(self._call("capture", fields, payload=image, in_flight=in_flight,
                              idempotent=retry_cut_off)["path"])

    def capture_b64(self, image: bytes, *, run: int, index: int, position: Sequence[float] = (0.0, 0.0, 0.0),
                    rotation: Sequence[Sequence[float]] = IDENTITY, intrinsics: Sequence[float],
                    gps: Sequence[float] | None = None, anchor: bool = False, bank: int = 0) -> str:
        """As `capture`, through /captureb64 (the image base64 inside the JSON)."""
        fields = _capture_fields(image, run, index, position, rotation, intrinsics, gps, anchor, bank)
        fields["b64"] = base64.b64encode(image).decode("ascii")
        return str(self._call("captureb64", fields)["path"])

    def construct(self, name: str, *, window_size: int = 0, bank: int = 0, **options: Any) -> dict:
        """Start building a map from the workspace; returns {"id", "size"} (size = image count).
        `options` are the vendor's construct fields (featureCount, dense, preservePoses, ...)."""
        unknown = set(options) - CONSTRUCT_OPTIONS
        if unknown:
            field = sorted(unknown)[0]
            raise InputError(f"immersal: unknown construct option {field!r}", vendor=VENDOR, field=field)
        window = _index(window_size, "window_size")
        # The vendor's Python sample sends window_size, the Unity SDK windowSize: send both.
        fields = {"bank": _index(bank, "bank"), "name": _map_name(name), "windowSize": window,
                  "window_size": window, **options}
        body = self._call("construct", fields)
        return {"id": int(body["id"]), "size": int(body["size"])}

    def fuse(self, name: str, map_ids: Iterable[int]) -> dict:
        """Stitch finished maps into a new one; returns {"id", "size"} (size = number of maps)."""
        ids = [_map_id(m, "map_ids") for m in map_ids]
        if not ids:
            raise InputError("immersal: fuse needs map ids", vendor=VENDOR, field="map_ids")
        # /fuse takes plain ids, unlike /localize's [{"id": ...}].
        body = self._call("fuse", {"name": _map_name(name), "mapIds": ids})
        return {"id": int(body["id"]), "size": int(body["size"])}

    def download_map(self, map_id: int) -> bytes:
        """The map's .bytes file (/mapb64), checked against the vendor's sha256_al."""
        body = self._call("mapb64", {"id": _map_id(map_id, "map_id")})
        try:
            data = base64.b64decode(body["b64"], validate=True)
        except (KeyError, ValueError) as exc:
            raise ImmersalConnError("immersal: map download was not valid base64", code="conn") from exc
        expected = str(body.get("sha256_al", "")).lower()
        if expected and hashlib.sha256(data).hexdigest() != expected:
            # A truncated or corrupted transfer; another download may well succeed.
            raise ImmersalConnError(f"immersal: map {map_id} bytes do not match sha256_al", code="conn")
        return data

    # --- localization ---
    def localize(self, image: bytes, map_ids: Iterable[int], intrinsics: Sequence[float]) -> dict:
        """Server localization (binary /localize) against up to 8 maps. The answer has `success`;
        on success `map` is the map found and px..pz, r00..r22 the camera pose in that map."""
        return self._call("localize", _localize_fields(image, map_ids, intrinsics), payload=image)

    def localize_b64(self, image: bytes, map_ids: Iterable[int], intrinsics: Sequence[float]) -> dict:
        """As `localize`, through /localizeb64."""
        fields = _localize_fields(image, map_ids, intrinsics)
        fields["b64"] = base64.b64encode(image).decode("ascii")
        return self._call("localizeb64", fields)

    def ecef(self, map_id: int) -> list[float]:
        """The map's 13-value map->ECEF transform (see vendors.geodesy); "not found" without GPS."""
        values = self._call("ecef", {"id": _map_id(map_id, "map_id")}).get("ecef")
        if not isinstance(values, list) or len(values) != 13:
            raise ImmersalConnError("immersal: /ecef did not return 13 values", code="conn")
        return [float(v) for v in values]

    # --- plumbing ---
    def _current_token(self) -> tuple[str, bool]:
        """(token, fresh): fresh when it was just obtained, so a refusal is final."""
        if self._token is not None:
            return self._token, True
        if not self._login:
            return "", True          # anonymous: the vendor serves public maps to an empty token
        cached = self.token_store.get(self.token_cache_key)
        return (cached, False) if cached else (self.login(), True)

    def _call(self, endpoint: str, fields: dict, payload: bytes | None = None,
              in_flight: Callable[[bool], None] | None = None, idempotent: bool | None = None) -> dict:
        token, fresh = self._current_token()
        try:
            return self._post(endpoint, {"token": token, **fields}, payload, in_flight, idempotent)
        except ImmersalAuthError:
            if fresh:
                raise
        # The cached token was refused (e.g. regenerated in the portal): log in once more, one retry.
        self.token_store.drop(self.token_cache_key)
        return self._post(endpoint, {"token": self.login(), **fields}, payload, in_flight, idempotent)

    def _post(self, endpoint: str, fields: dict, payload: bytes | None = None,
              in_flight: Callable[[bool], None] | None = None, idempotent: bool | None = None) -> dict:
        """One call, retried where it failed. Every endpoint is a POST; those that create a map or add
        images (construct, fuse, restore) are retried only when Immersal answered. A capture sent again
        replaces the image of the same run and index, so it is retried like a read (unless `idempotent`
        says otherwise)."""
        if idempotent is None:
            idempotent = endpoint not in CREATING_ENDPOINTS
        return self.retries.run(lambda: self._post_once(endpoint, fields, payload, in_flight),
                                idempotent=idempotent)

    def _post_once(self, endpoint: str, fields: dict, payload: bytes | None = None,
                   in_flight: Callable[[bool], None] | None = None) -> dict:
        """One POST. With `payload`, the body is JSON + NUL + raw bytes (the binary endpoints)."""
        body: bytes | _Body = json.dumps(fields).encode("utf-8")
        headers = {}
        if payload is not None:
            body += b"\0" + payload
            headers["Content-Type"] = "application/octet-stream"
        if in_flight is not None:
            body = _Body(body, lambda: in_flight(True))
        response = send(self.session, "POST", f"{self.base_url}/{endpoint}", vendor=VENDOR,
                        timeout=self.timeout, data=body, headers=headers, check_status=False)
        if in_flight is not None:
            in_flight(False)       # answered, whatever it says: a refusal took no effect
        raise_for_transient(response, VENDOR)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "error" not in answer:
            if 400 <= response.status_code < 500:
                raise ImmersalError(f"immersal /{endpoint}: HTTP {response.status_code}",
                                    code=f"http {response.status_code}", status=response.status_code)
            raise ImmersalConnError(f"immersal /{endpoint}: answer without an error field",
                                    code="conn", status=response.status_code)
        code = str(answer["error"])
        if code != "none":
            error_class = ERRORS_BY_CODE.get(code, ImmersalError)
            raise error_class(f"immersal /{endpoint}: {code}", code=code, status=response.status_code)
        del answer["error"]
        return answer


class _Body(io.BytesIO):
    """A request body that calls `on_sent()` when it is read past its end: the HTTP client reads it
    block by block and sends each, so by then the whole request is on its way to the server."""

    def __init__(self, data: bytes, on_sent: Callable[[], None]) -> None:
        super().__init__(data)
        self._on_sent = on_sent

    def read(self, size: int | None = -1) -> bytes:
        block = super().read(size)
        if not block:
            self._on_sent()
        return block


# --- validation, before anything is sent ---
def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _index(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InputError(f"immersal: {field} must be a non-negative integer", vendor=VENDOR, field=field)
    return int(value)


def _map_id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise InputError(f"immersal: {field} must hold positive integer map ids, got {value!r}",
                         vendor=VENDOR, field=field)
    return int(value)


def _map_name(name: Any) -> str:
    if not isinstance(name, str) or not MAP_NAME.fullmatch(name):
        raise InputError(f"immersal: map name {name!r} must be letters and digits only (A-Z, a-z, 0-9)",
                         vendor=VENDOR, field="name")
    return name


def _image(image: Any) -> bytes:
    # The vendor takes PNG (its docs) and JPEG (its mapping scripts).
    if not isinstance(image, (bytes, bytearray)) or not image.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        raise InputError("immersal: image must be PNG or JPEG bytes", vendor=VENDOR, field="image")
    return bytes(image)


def _intrinsics(values: Sequence[float]) -> dict:
    values = tuple(values)
    if len(values) != 4 or not all(_finite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
        raise InputError("immersal: intrinsics must be (fx, fy, ox, oy) in pixels, fx and fy > 0",
                         vendor=VENDOR, field="intrinsics")
    return dict(zip(("fx", "fy", "ox", "oy"), map(float, values), strict=True))


def _check_gps(latitude: Any, longitude: Any, altitude: Any) -> None:
    if not (_finite(latitude) and _finite(longitude) and _finite(altitude)
            and -90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise InputError("immersal: gps must be (latitude, longitude, altitude) in WGS84 degrees and metres",
                         vendor=VENDOR, field="gps")


def _capture_fields(image, run, index, position, rotation, intrinsics, gps, anchor, bank) -> dict:
    _image(image)
    position = tuple(position)
    if len(position) != 3 or not all(_finite(v) for v in position):
        raise InputError("immersal: position must be three finite numbers", vendor=VENDOR, field="position")
    rows = [tuple(row) for row in rotation]
    if len(rows) != 3 or any(len(row) != 3 or not all(_finite(v) for v in row) for row in rows):
        raise InputError("immersal: rotation must be a 3x3 matrix", vendor=VENDOR, field="rotation")
    fields = {"bank": _index(bank, "bank"), "run": _index(run, "run"), "index": _index(index, "index"),
              "anchor": bool(anchor), "px": float(position[0]), "py": float(position[1]), "pz": float(position[2])}
    fields.update({f"r{i}{j}": float(rows[i][j]) for i in range(3) for j in range(3)})
    fields.update(_intrinsics(intrinsics))
    if gps is not None:
        latitude, longitude, altitude = gps
        _check_gps(latitude, longitude, altitude)
        fields.update(latitude=float(latitude), longitude=float(longitude), altitude=float(altitude))
    return fields


def _localize_fields(image: bytes, map_ids: Iterable[int], intrinsics: Sequence[float]) -> dict:
    _image(image)
    ids = [_map_id(m, "map_ids") for m in map_ids]
    if not 1 <= len(ids) <= MAX_LOCALIZE_MAPS:
        raise InputError(f"immersal: localize takes 1 to {MAX_LOCALIZE_MAPS} map ids, got {len(ids)}",
                         vendor=VENDOR, field="map_ids")
    return {**_intrinsics(intrinsics), "mapIds": [{"id": m} for m in ids]}


def _jobs(body: dict) -> list[dict]:
    jobs = list(body.get("jobs") or [])
    for job in jobs:
        job["status"] = normalize_status(job.get("status", ""))
    return jobs
