"""Mapillary stand-in: signed, expiring thumbnail URLs and the CDN that serves them."""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import time

from flask import Response, request

from sandbox import mapillary_views as views
from sandbox import mapillary_world as mw
from sandbox.mapillary_api import _sign


class CdnRoutes:
    """The URLs Graph hands out for thumbnails, meshes and SfM clusters, and GET on them."""

    # --- CDN: signed, expiring URLs as fbcdn hands out ---
    def _cdn_url(self, image: mw.Image, kind: str) -> str:
        expires = int(time.time() + float(self.options["thumbnail_lifetime_s"]))
        opaque = base64.urlsafe_b64encode(f"{image.id}:{kind}".encode()).decode().rstrip("=")
        oe = f"{expires:X}"
        width, height = _thumbnail_size(image, kind)
        return (f"{self.public_url}/{self.name}/cdn/m1/v/t6/{opaque}?stp=s{width}x{height}&ccb=10-5"
                f"&oh=00_{_sign(opaque, oe)[:40]}&oe={oe}&_nc_sid=122ab1")

    def _cdn(self, opaque: str) -> Response:
        oe, oh = request.args.get("oe", ""), request.args.get("oh", "")
        if not hmac.compare_digest(oh, f"00_{_sign(opaque, oe)[:40]}"):
            self.calls.add("cdn_refused", "bad_hash")
            return Response("Bad URL hash", status=403, mimetype="text/plain")
        if int(oe, 16) < time.time():
            self.calls.add("cdn_refused", "expired")
            return Response("URL signature expired", status=403, mimetype="text/plain")
        image_id, kind = base64.urlsafe_b64decode(opaque + "=" * (-len(opaque) % 4)).decode().split(":")
        image = self.world.images.get(image_id)
        if image is None:
            return Response("Not Found", status=404, mimetype="text/plain")
        if kind in ("mesh", "sfm"):
            self.calls.add("cdn_blob", image_id)
            return Response(hashlib.sha256(f"{kind}:{image_id}".encode()).digest() * 8,
                            mimetype="application/octet-stream")
        width, height = _thumbnail_size(image, kind)
        self.calls.add("thumbnail", image_id)
        # Small thumbnails are asked for again and again; large ones are quick enough to redraw.
        picture = _cached_jpeg(image, width, height) if width <= 1024 else views.render_jpeg(image, width, height)
        return Response(picture, mimetype="image/jpeg")


def _thumbnail_size(image: mw.Image, kind: str) -> tuple[int, int]:
    width, height = image.camera.width, image.camera.height
    if kind in ("original", "mesh", "sfm"):
        return width, height
    target = int(kind)
    return target, max(1, round(height * target / width))


@functools.lru_cache(maxsize=512)
def _cached_jpeg(image: mw.Image, width: int, height: int) -> bytes:
    return views.render_jpeg(image, width, height)
