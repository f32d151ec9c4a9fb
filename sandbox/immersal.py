"""Immersal stand-in: accounts, workspaces (image banks), map construction, download, localization, ECEF.

Faithful to the vendor's contract (docs/vendors/immersal.md):
every call is a POST whose JSON body carries the token; binary variants send JSON + NUL + image;
the answer is always HTTP 200 with `"error": "none"` or the vendor's error string ("auth", "job",
"not found", "map count", "name"). Missing fields read as 0 / false / "" as a C server would.

Where the vendor documents nothing, the stand-in decides (and says so here):
- a full workspace answers "image limit" (the vendor's string for it is unknown);
- a bank outside 0..bankMax-1 answers "query" (the vendor's "DB error or no results");
- /metadataget and /privacy answer "not found" for a map the token cannot see;
- an image is "with GPS" when latitude or longitude is non-zero (the samples send 0.0 for none);
- a map is localizable from "sparse" on; /fuse takes 2..32 ids of "done" maps, as /align does;
- /geolist returns the account's maps and public ones; /restore without "clear" adds to the workspace.
Tokens: /login hands out the account's developer token, as the vendor's does. The control API's
{"revoke_tokens": true | [logins]} regenerates it, as the vendor's portal does: the old token
then answers "auth" (counted as auth_refused) and /login gives the new one.
Map status is computed from elapsed time: pending for the first 10% of `construct_seconds`,
processing until 60%, then sparse (or failed), done at 100%.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import lzma
import math
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from flask import Blueprint, Response, request
from PIL import Image as PILImage

from sandbox.vendor import VendorStandIn

DEFAULT_LOGIN = "sandbox@example.com"
DEFAULT_PASSWORD = "sandbox-password"
DEFAULT_TOKEN = "5a4d1e7c3b2f9a8e6d0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e"
VERSION = "1.8.0"
MAP_NAME = re.compile(r"[A-Za-z0-9]+")
MAX_LOCALIZE_MAPS = 8
MAX_FUSE_MAPS = 32
# What /construct reads besides token, bank and name (the Python sample writes window_size).
CONSTRUCT_OPTIONS = frozenset({
    "windowSize", "window_size", "featureCount", "featureCountMax", "featureType", "featureFilter",
    "preservePoses", "mapTrim", "compressionLevel", "dense", "trackLengthMin", "triangulationDistanceMax",
})
FIRST_MAP_ID = 1001
# Share of construct_seconds after which a map leaves pending, and reaches sparse.
PENDING_SHARE, PROCESSING_SHARE = 0.1, 0.6
ROTATION_FIELDS = tuple(f"r{i}{j}" for i in range(3) for j in range(3))
WGS84_A, WGS84_E2 = 6378137.0, (1 / 298.257223563) * (2 - 1 / 298.257223563)


@dataclass(frozen=True)
class StoredImage:
    run: int
    index: int
    anchor: bool
    position: tuple[float, float, float]
    rotation: tuple[float, ...]              # r00, r01, ... r22
    gps: tuple[float, float, float] | None   # latitude, longitude, altitude
    data: bytes
    sha256: str
    readable: bool                           # Pillow could open it; unreadable images do not build


@dataclass
class StoredMap:
    id: int
    owner: str
    bank: int
    name: str
    kind: int                                # 0 construction, 1 stitch (the vendor's type)
    images: list[StoredImage]
    size: int
    created: float
    fails: bool
    options: dict[str, Any] = field(default_factory=dict)   # construct options as received
    privacy: int = 0
    content: bytes = b""
    gps: tuple[float, float, float] | None = None
    ecef: list[float] | None = None

    def status(self, now: float, seconds: float) -> str:
        share = (now - self.created) / seconds if seconds > 0 else 1.0
        if share < PENDING_SHARE:
            return "pending"
        if share < PROCESSING_SHARE:
            return "processing"
        if self.fails:
            return "failed"
        return "sparse" if share < 1.0 else "done"

    def modified(self, now: float, seconds: float) -> float:
        """When the status last changed."""
        share = (now - self.created) / seconds if seconds > 0 else 1.0
        reached = max((s for s in (0.0, PENDING_SHARE, PROCESSING_SHARE, 1.0) if s <= share), default=0.0)
        if self.fails:
            reached = min(reached, PROCESSING_SHARE)
        return self.created + reached * max(seconds, 0.0)


# --- geometry the vendor does server-side (independent of vendors/geodesy on purpose) ---
def wgs84_to_ecef(lat_deg: float, lon_deg: float, alt: float) -> list[float]:
    lat, lon = math.radians(lat_deg), math.radians(lon_deg)
    n = WGS84_A / math.sqrt(1 - WGS84_E2 * math.sin(lat) ** 2)
    return [(n + alt) * math.cos(lat) * math.cos(lon), (n + alt) * math.cos(lat) * math.sin(lon),
            (n * (1 - WGS84_E2) + alt) * math.sin(lat)]


def map_rotation(lat_deg: float, lon_deg: float) -> list[list[float]]:
    """Rows of R, built from the local east/north/up vectors so that, with ecef = t + R @ [-y, -x, z],
    map +X points east, +Y up and +Z north. Its first column is -up, as in the vendor doc's sample matrix."""
    lat, lon = math.radians(lat_deg), math.radians(lon_deg)
    east = [-math.sin(lon), math.cos(lon), 0.0]
    north = [-math.sin(lat) * math.cos(lon), -math.sin(lat) * math.sin(lon), math.cos(lat)]
    up = [math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)]
    return [[-up[i], -east[i], north[i]] for i in range(3)]


def map_to_ecef_array(images: list[StoredImage]) -> tuple[tuple[float, float, float], list[float]] | None:
    """(mean GPS, the 13 /ecef values) for a map whose images carry GPS; None without GPS.

    The map frame is the images' tracker frame (Y up), oriented east/up/north and placed so that
    the images' mean position lands on their mean GPS position; scale 1."""
    located = [img for img in images if img.gps is not None]
    if not located:
        return None
    count = len(located)
    gps = tuple(sum(img.gps[k] for img in located) / count for k in range(3))
    mean = [sum(img.position[k] for img in located) / count for k in range(3)]
    rotation = map_rotation(gps[0], gps[1])
    local = [-mean[1], -mean[0], mean[2]]
    centre = wgs84_to_ecef(*gps)
    translation = [centre[i] - sum(rotation[i][j] * local[j] for j in range(3)) for i in range(3)]
    return gps, translation + [v for row in rotation for v in row] + [1.0]


def rotation_to_quaternion(m: list[list[float]]) -> tuple[float, float, float, float]:
    """(w, x, y, z) of a proper rotation matrix."""
    trace = m[0][0] + m[1][1] + m[2][2]
    if trace > 0:
        s = 2 * math.sqrt(1 + trace)
        return s / 4, (m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s
    i = max(range(3), key=lambda k: m[k][k])
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2 * math.sqrt(1 + m[i][i] - m[j][j] - m[k][k])
    q = [0.0, 0.0, 0.0]
    q[i], q[j], q[k] = s / 4, (m[j][i] + m[i][j]) / s, (m[k][i] + m[i][k]) / s
    return (m[k][j] - m[j][k]) / s, q[0], q[1], q[2]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on the mean Earth sphere (enough for a radius filter)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(min(1.0, math.sqrt(h)))


def map_bytes(images: list[StoredImage]) -> bytes:
    """A deterministic .bytes file derived from the images; LZMA-alone like the vendor's (b64 'XQAAA...')."""
    lines = [b"geoqueue sandbox immersal map 1"]
    for img in images:
        pose = " ".join(repr(v) for v in (*img.position, *img.rotation))
        lines.append(f"{img.run} {img.index} {img.sha256} {pose}".encode())
    return lzma.compress(b"\n".join(lines), format=lzma.FORMAT_ALONE)


def readable_image(data: bytes) -> bool:
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            img.verify()
        return True
    except Exception:  # Pillow raises many types for undecodable input
        return False


# --- request helpers: a C server reads what it finds and defaults the rest ---
def _number(body: dict, key: str, kind: Callable = float) -> Any:
    value = body.get(key, 0)
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        return kind(0)


def _flag(body: dict, key: str) -> bool:
    value = body.get(key, False)
    return value is True or (isinstance(value, (int, float)) and value != 0)


def _answer(error: str = "none", **fields: Any) -> Response:
    # Always HTTP 200: the vendor reports outcomes in the body, "error" first as in its docs.
    return Response(json.dumps({"error": error, **fields}), status=200, mimetype="application/json")


class ImmersalStandIn(VendorStandIn):
    name = "immersal"

    def default_options(self) -> dict[str, Any]:
        return {
            "accounts": {DEFAULT_LOGIN: {"password": DEFAULT_PASSWORD, "token": DEFAULT_TOKEN}},
            "image_max": 250,            # imageMax of every workspace
            "bank_max": 1,               # workspaces (image banks) per account
            "construct_seconds": 2.0,    # from /construct or /fuse to "done"
            "fail_constructions": False,  # every new map ends "failed"
            "status_case": "lower",      # "lower" as the SDK, "capitalized" as the vendor's docstrings
        }

    def __init__(self, public_url: str = "") -> None:
        super().__init__(public_url)
        self.reset_state()

    def configure(self, values: dict[str, Any]) -> dict[str, Any]:
        # A one-off action rather than an option, as regenerating the token in the vendor's portal is:
        # {"revoke_tokens": true} (every account) or ["login", ...]. The old token then answers "auth"
        # and /login hands out the new one.
        revoke = values.pop("revoke_tokens", None)
        options = super().configure(values)
        if revoke:
            with self.lock:
                accounts = self.options["accounts"]
                logins = list(accounts) if revoke is True else [revoke] if isinstance(revoke, str) else list(revoke)
                unknown = [login for login in logins if login not in accounts]
                if unknown:
                    raise ValueError(f"no immersal account(s) {', '.join(map(str, unknown))} to revoke")
                for login in logins:
                    accounts[login] = {**accounts[login], "token": secrets.token_hex(32)}
                    self.calls.add("token_revoked", login)
                options = dict(self.options)
        return options

    def reset_state(self) -> None:
        self.workspaces: dict[tuple[str, int], dict[tuple[int, int], StoredImage]] = {}
        self.maps: dict[int, StoredMap] = {}
        self.next_map_id = FIRST_MAP_ID

    # --- who is calling ---
    def _login_of(self, token: Any) -> str | None:
        for login, account in self.options["accounts"].items():
            if token and token == account.get("token"):
                return login
        return None

    def _user_id(self, login: str) -> int:
        return list(self.options["accounts"]).index(login) + 1

    def _workspace(self, login: str, bank: int) -> dict[tuple[int, int], StoredImage]:
        return self.workspaces.setdefault((login, bank), {})

    def _bank_ok(self, bank: int) -> bool:
        return 0 <= bank < int(self.options["bank_max"])

    def _status(self, stored: StoredMap) -> str:
        return stored.status(time.time(), float(self.options["construct_seconds"]))

    def _shown(self, status: str) -> str:
        return status.capitalize() if self.options["status_case"] == "capitalized" else status

    def _map(self, map_id: Any) -> StoredMap | None:
        return self.maps.get(map_id) if isinstance(map_id, int) and not isinstance(map_id, bool) else None

    def _visible(self, map_id: Any, login: str | None) -> StoredMap | None:
        stored = self._map(map_id)
        if stored and (stored.owner == login or stored.privacy == 1):
            return stored
        return None

    def _ready(self, stored: StoredMap | None) -> bool:
        return stored is not None and self._status(stored) in ("sparse", "done")

    # --- the map record as /list and /metadataget show it ---
    def _hashes(self, stored: StoredMap) -> dict[str, str]:
        status = self._status(stored)
        sparse = status in ("sparse", "done")
        done = status == "done"
        digest = lambda tag: hashlib.sha256(tag + stored.content).hexdigest()  # noqa: E731
        return {
            "sha256_al": hashlib.sha256(stored.content).hexdigest() if sparse else "",
            "sha256_sparse": digest(b"sparse") if sparse else "",
            "sha256_dense": digest(b"dense") if done else "",
            "sha256_tex": digest(b"tex") if done else "",
        }

    def _job(self, stored: StoredMap) -> dict[str, Any]:
        now, seconds = time.time(), float(self.options["construct_seconds"])
        latitude, longitude, altitude = stored.gps or (0.0, 0.0, 0.0)
        return {
            "id": stored.id, "version": VERSION, "creator": stored.owner, "bank": stored.bank,
            "size": stored.size, "work": f"/im/s00/job/{hashlib.sha256(str(stored.id).encode()).hexdigest()[:6]}",
            "status": self._shown(stored.status(now, seconds)), "privacy": str(stored.privacy), "server": "",
            "name": stored.name, "latitude": latitude, "longitude": longitude, "altitude": altitude,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stored.created)),
            "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stored.modified(now, seconds))),
            **self._hashes(stored),
        }

    def _metadata(self, stored: StoredMap) -> dict[str, Any]:
        job = self._job(stored)
        if stored.ecef:
            tx, ty, tz = stored.ecef[0:3]
            rows = [stored.ecef[3:6], stored.ecef[6:9], stored.ecef[9:12]]
            qw, qx, qy, qz = rotation_to_quaternion(rows)
        else:
            tx = ty = tz = qx = qy = qz = 0.0
            qw = 1.0
        return {
            "id": stored.id, "type": stored.kind, "created": job["created"], "version": VERSION,
            "user": self._user_id(stored.owner) if stored.owner in self.options["accounts"] else 0,
            "creator": stored.owner, "name": stored.name, "size": stored.size, "status": job["status"],
            "errno": 1 if self._status(stored) == "failed" else 0, "privacy": stored.privacy,
            "latitude": job["latitude"], "longitude": job["longitude"], "altitude": job["altitude"],
            "tx": tx, "ty": ty, "tz": tz, "qw": qw, "qx": qx, "qy": qy, "qz": qz, "scale": 1.0,
            **self._hashes(stored),
        }

    def _new_map(self, login: str, bank: int, name: str, kind: int, images: list[StoredImage], size: int,
                 fails: bool, options: dict | None = None) -> StoredMap:
        usable = [img for img in images if img.readable]
        located = map_to_ecef_array(usable)
        stored = StoredMap(id=self.next_map_id, owner=login, bank=bank, name=name, kind=kind, images=list(images),
                           size=size, created=time.time(), fails=fails, options=options or {},
                           content=map_bytes(usable), gps=located[0] if located else None,
                           ecef=located[1] if located else None)
        self.maps[stored.id] = stored
        self.next_map_id += 1
        return stored

    # --- endpoints (each runs under self.lock) ---
    def on_login(self, body: dict) -> Response:
        login = body.get("login")
        account = self.options["accounts"].get(login) if isinstance(login, str) else None
        if not account or not body.get("password") or body.get("password") != account.get("password"):
            return _answer("auth")
        return _answer(userId=self._user_id(login), token=account["token"],
                       banks=int(self.options["bank_max"]), level=0)

    def on_status(self, body: dict, login: str) -> Response:
        bank = _number(body, "bank", int)
        if not self._bank_ok(bank):
            return _answer("query")
        return _answer(userId=self._user_id(login), imageCount=len(self._workspace(login, bank)),
                       bankMax=int(self.options["bank_max"]), imageMax=int(self.options["image_max"]),
                       eulaAccepted=True, level=0)

    def on_clear(self, body: dict, login: str) -> Response:
        bank = _number(body, "bank", int)
        if not self._bank_ok(bank):
            return _answer("query")
        workspace = self._workspace(login, bank)
        keep_anchor = not _flag(body, "anchor")
        for key in [k for k, img in workspace.items() if not (keep_anchor and img.anchor)]:
            del workspace[key]
        return _answer()

    def on_restore(self, body: dict, login: str) -> Response:
        stored = self._map(body.get("id"))
        if stored is None or stored.owner != login:
            return _answer("job")
        workspace = self._workspace(login, stored.bank)
        if _flag(body, "clear"):
            workspace.clear()
        for img in stored.images:
            workspace[(img.run, img.index)] = img
        return _answer()

    def on_list(self, body: dict, login: str) -> Response:
        jobs = [self._job(m) for m in sorted(self.maps.values(), key=lambda m: -m.id) if m.owner == login]
        return _answer(count=len(jobs), jobs=jobs)

    def on_geolist(self, body: dict, login: str) -> Response:
        latitude, longitude, radius = (_number(body, k) for k in ("latitude", "longitude", "radius"))
        nearby = []
        for stored in self.maps.values():
            if stored.gps and (stored.owner == login or stored.privacy == 1):
                distance = distance_m(latitude, longitude, stored.gps[0], stored.gps[1])
                if distance <= radius:
                    nearby.append((distance, stored.id, stored))
        jobs = [self._job(m) for _, _, m in sorted(nearby, key=lambda item: item[:2])]
        return _answer(count=len(jobs), jobs=jobs)

    def on_capture(self, body: dict, login: str, image: bytes) -> Response:
        bank, run, index = (_number(body, k, int) for k in ("bank", "run", "index"))
        if not self._bank_ok(bank):
            return _answer("query")
        workspace = self._workspace(login, bank)
        if (run, index) not in workspace and len(workspace) >= int(self.options["image_max"]):
            return _answer("image limit")
        latitude, longitude, altitude = (_number(body, k) for k in ("latitude", "longitude", "altitude"))
        anchor = _flag(body, "anchor")
        if anchor:  # one anchor per map: a new one overrides the old
            for key, img in list(workspace.items()):
                workspace[key] = replace(img, anchor=False)
        digest = hashlib.sha256(image).hexdigest()
        workspace[(run, index)] = StoredImage(
            run=run, index=index, anchor=anchor,
            position=(_number(body, "px"), _number(body, "py"), _number(body, "pz")),
            rotation=tuple(_number(body, k) for k in ROTATION_FIELDS),
            gps=(latitude, longitude, altitude) if (latitude or longitude) else None,
            data=image, sha256=digest, readable=readable_image(image))
        self.calls.add("capture", f"{bank}:{run}:{index}")
        extension = "jpg" if image.startswith(b"\xff\xd8") else "png"
        path = f"/im/s00/img/{self._user_id(login)}/h{bank}_{run}_{index}_{int(anchor)}_{digest[:6]}.{extension}"
        return _answer(path=path)

    def on_construct(self, body: dict, login: str) -> Response:
        bank, name = _number(body, "bank", int), body.get("name")
        if not self._bank_ok(bank):
            return _answer("query")
        if not isinstance(name, str) or not MAP_NAME.fullmatch(name):
            return _answer("name")
        images = sorted(self._workspace(login, bank).values(), key=lambda img: (img.run, img.index))
        readable = sum(img.readable for img in images)
        fails = readable < 2 or bool(self.options["fail_constructions"])
        options = {k: v for k, v in body.items() if k in CONSTRUCT_OPTIONS}
        stored = self._new_map(login, bank, name, kind=0, images=images, size=len(images), fails=fails,
                               options=options)
        return _answer(id=stored.id, size=stored.size)

    def on_fuse(self, body: dict, login: str) -> Response:
        name, ids = body.get("name"), body.get("mapIds")
        if not isinstance(name, str) or not MAP_NAME.fullmatch(name):
            return _answer("name")
        # The doc's /fuse takes plain ids ([1234, 5678]); anything else is not a valid map.
        if not isinstance(ids, list) or not 2 <= len(ids) <= MAX_FUSE_MAPS or len(set(map(repr, ids))) != len(ids):
            return _answer("map count")
        sources = [self._map(i) for i in ids]
        if any(s is None or s.owner != login or self._status(s) != "done" for s in sources):
            return _answer("map count")
        images = [img for source in sources for img in source.images]
        fails = bool(self.options["fail_constructions"])
        stored = self._new_map(login, sources[0].bank, name, kind=1, images=images, size=len(sources), fails=fails)
        return _answer(id=stored.id, size=stored.size)

    def on_mapb64(self, body: dict, login: str | None) -> Response:
        stored = self._visible(body.get("id"), login)
        if not self._ready(stored):
            return _answer("not found")
        return _answer(sha256_al=hashlib.sha256(stored.content).hexdigest(),
                       b64=base64.b64encode(stored.content).decode("ascii"))

    def on_ecef(self, body: dict, login: str | None) -> Response:
        stored = self._visible(body.get("id"), login)
        if not self._ready(stored) or stored.ecef is None:
            return _answer("not found")
        return _answer(ecef=stored.ecef)

    def on_metadataget(self, body: dict, login: str | None) -> Response:
        stored = self._visible(body.get("id"), login)
        if stored is None:
            return _answer("not found")
        return _answer(**self._metadata(stored))

    def on_privacy(self, body: dict, login: str) -> Response:
        stored = self._map(body.get("id"))
        if stored is None or stored.owner != login:
            return _answer("not found")
        stored.privacy = 1 if _number(body, "privacy", int) == 1 else 0
        return _answer()

    def on_localize(self, body: dict, login: str | None, image: bytes) -> Response:
        entries = body.get("mapIds")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_LOCALIZE_MAPS:
            return _answer("map count")
        ids = [entry.get("id") for entry in entries if isinstance(entry, dict)]
        candidates = [m for m in (self._visible(i, login) for i in ids) if self._ready(m)]
        if not candidates:
            return _answer("map count")
        digest = hashlib.sha256(image).hexdigest()
        for stored in candidates:
            for img in stored.images:
                if img.readable and img.sha256 == digest:
                    pose = dict(zip(("px", "py", "pz"), img.position))
                    return _answer(success=True, map=stored.id, **pose, **dict(zip(ROTATION_FIELDS, img.rotation)))
        return _answer(success=False, map=-1, px=0, py=0, pz=0, **{k: 0 for k in ROTATION_FIELDS})

    # --- routing ---
    def register(self, bp: Blueprint) -> None:
        # endpoint: (handler, who may call: "none" | "account" | "anyone", binary body)
        routes: dict[str, tuple[Callable, str, bool]] = {
            "login": (self.on_login, "none", False),
            "status": (self.on_status, "account", False),
            "clear": (self.on_clear, "account", False),
            "restore": (self.on_restore, "account", False),
            "list": (self.on_list, "account", False),
            "geolist": (self.on_geolist, "account", False),
            "captureb64": (self.on_capture, "account", False),
            "capture": (self.on_capture, "account", True),
            "construct": (self.on_construct, "account", False),
            "fuse": (self.on_fuse, "account", False),
            "privacy": (self.on_privacy, "account", False),
            "mapb64": (self.on_mapb64, "anyone", False),
            "ecef": (self.on_ecef, "anyone", False),
            "metadataget": (self.on_metadataget, "anyone", False),
            "localizeb64": (self.on_localize, "anyone", False),
            "localize": (self.on_localize, "anyone", True),
        }
        for endpoint, (handler, caller, binary) in routes.items():
            bp.add_url_rule(f"/{endpoint}", endpoint, self._route(endpoint, handler, caller, binary),
                            methods=["POST"])

    def _route(self, endpoint: str, handler: Callable, caller: str, binary: bool) -> Callable[[], Response]:
        takes_image = endpoint in ("capture", "captureb64", "localize", "localizeb64")

        def serve() -> Response:
            self.calls.add(f"/{endpoint}")
            raw = request.get_data()
            head, _, payload = raw.partition(b"\0") if binary else (raw, b"", b"")
            try:
                body = json.loads(head.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                body = {}
            if not isinstance(body, dict):
                body = {}
            if takes_image and not binary:
                try:
                    payload = base64.b64decode(str(body.get("b64", "")), validate=True)
                except ValueError:
                    payload = b""
            args: list[Any] = [body]
            with self.lock:
                if caller != "none":
                    login = self._login_of(body.get("token"))
                    if login is None and (caller == "account" or body.get("token")):
                        self.calls.add("auth_refused", f"/{endpoint}")
                        # /mapb64 and /ecef document one answer for a bad token and a bad map id.
                        return _answer("not found" if endpoint in ("mapb64", "ecef") else "auth")
                    args.append(login)
                if takes_image:
                    args.append(payload)
                return handler(*args)

        return serve

    def status(self) -> dict[str, Any]:
        """For /_sandbox/status/immersal: workspace sizes and map states."""
        with self.lock:
            return {
                "workspaces": {f"{login}:{bank}": len(images) for (login, bank), images in self.workspaces.items()},
                "maps": {str(m.id): {"status": self._status(m), "name": m.name, "options": m.options}
                         for m in self.maps.values()},
            }


STAND_IN = ImmersalStandIn
