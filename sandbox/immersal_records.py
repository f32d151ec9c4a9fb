"""Immersal stand-in: finding a map the caller may see, its status, and its record as /list and
/metadataget show it."""
from __future__ import annotations

import hashlib
import time
from typing import Any

from sandbox.immersal_geometry import rotation_to_quaternion
from sandbox.immersal_state import StoredMap

VERSION = "1.8.0"


class MapRecords:
    """Lookups and records of stored maps, shared by the endpoints."""

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
