"""Immersal stand-in: maps: /construct, /fuse, /list, /geolist, /mapb64, /ecef, /metadataget, /privacy."""
from __future__ import annotations

import base64
import hashlib
import re
import time

from flask import Response

from sandbox.immersal_api import _answer, _number
from sandbox.immersal_geometry import distance_m, map_to_ecef_array
from sandbox.immersal_state import StoredImage, StoredMap, map_bytes

MAP_NAME = re.compile(r"[A-Za-z0-9]+")
MAX_FUSE_MAPS = 32
# What /construct reads besides token, bank and name (the Python sample writes window_size).
CONSTRUCT_OPTIONS = frozenset({
    "windowSize", "window_size", "featureCount", "featureCountMax", "featureType", "featureFilter",
    "preservePoses", "mapTrim", "compressionLevel", "dense", "trackLengthMin", "triangulationDistanceMax",
})


class MapRoutes:
    """Building maps from a workspace or other maps, and reading them back. Endpoints run under self.lock."""

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
