"""Immersal stand-in: /localize and /localizeb64, which find an image among the images of ready maps."""
from __future__ import annotations

import hashlib

from flask import Response

from sandbox.immersal_api import _answer
from sandbox.immersal_state import ROTATION_FIELDS

MAX_LOCALIZE_MAPS = 8


class LocalizeRoutes:
    """Localization against up to MAX_LOCALIZE_MAPS maps. Runs under self.lock."""

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
                    pose = dict(zip(("px", "py", "pz"), img.position, strict=True))
                    rotation = dict(zip(ROTATION_FIELDS, img.rotation, strict=True))
                    return _answer(success=True, map=stored.id, **pose, **rotation)
        return _answer(success=False, map=-1, px=0, py=0, pz=0, **dict.fromkeys(ROTATION_FIELDS, 0))
