"""Immersal stand-in: workspaces (image banks): /status, /clear, /restore and /capture(b64)."""
from __future__ import annotations

import hashlib
from dataclasses import replace

from flask import Response

from sandbox.immersal_api import _answer, _flag, _number
from sandbox.immersal_state import ROTATION_FIELDS, StoredImage, readable_image


class WorkspaceRoutes:
    """The images an account collects in a bank before /construct. Endpoints run under self.lock."""

    def _workspace(self, login: str, bank: int) -> dict[tuple[int, int], StoredImage]:
        return self.workspaces.setdefault((login, bank), {})

    def _bank_ok(self, bank: int) -> bool:
        return 0 <= bank < int(self.options["bank_max"])

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
