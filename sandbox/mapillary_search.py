"""Mapillary stand-in: image search (GET /images by bbox, point and radius, or sequence)."""
from __future__ import annotations

import math
from datetime import UTC, datetime

from flask import Response, jsonify, request

from sandbox import mapillary_world as mw
from sandbox.mapillary_api import graph_error
from sandbox.mapillary_graph import IMAGE_FIELDS

SEARCH_LIMIT = 2000
SEARCH_MAX_RADIUS_M = 50
CAPTURE_BOUNDS = ("start_captured_at", "end_captured_at")    # ISO 8601, bounds included


class SearchRoutes:
    """GET /images."""

    def _search_images(self) -> Response:
        refused = self._guard_read("graph")
        if refused:
            return refused
        args, world = request.args, self.world
        names = self._requested_fields(IMAGE_FIELDS, "Image")
        if isinstance(names, Response):
            return names
        try:
            limit = min(int(args.get("limit", SEARCH_LIMIT)), SEARCH_LIMIT)
            if "bbox" in args:
                bbox = tuple(float(v) for v in args["bbox"].split(","))
                if len(bbox) != 4:
                    raise ValueError("bbox needs minLon,minLat,maxLon,maxLat")
                candidates = world.images_in_bbox(bbox)
            elif "lat" in args and "lng" in args:
                radius = float(args.get("radius", SEARCH_MAX_RADIUS_M))
                if radius > SEARCH_MAX_RADIUS_M:
                    raise ValueError(f"radius must be at most {SEARCH_MAX_RADIUS_M} meters")
                lat, lng = float(args["lat"]), float(args["lng"])
                candidates = [i for i in world.images.values() if _metres(lng, lat, i.lon, i.lat) <= radius]
            elif "sequence_id" in args:
                wanted = set(args["sequence_id"].split(","))
                candidates = [world.images[i] for s in wanted if s in world.sequences
                              for i in world.sequences[s].image_ids]
            else:
                raise ValueError("one of bbox, lat/lng or sequence_id is required")
            if ("make" in args or "model" in args) and "bbox" not in args:
                raise ValueError("make and model can only be used together with bbox")
            for name in CAPTURE_BOUNDS:
                if name in args:
                    epoch_ms(args[name])    # refused even when no image is left to compare
            candidates = [i for i in candidates if _search_match(i, args)]
        except ValueError as exc:
            return graph_error(400, f"(#100) Invalid parameter: {exc}", 100)
        candidates.sort(key=lambda i: i.captured_at, reverse=True)   # newest first, as observed
        self.calls.add("images_search")
        return jsonify({"data": [self._serialize("Image", i, names) for i in candidates[:limit]]})


def _metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    dx = (lon2 - lon1) * mw.EARTH_M_PER_DEG * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, (lat2 - lat1) * mw.EARTH_M_PER_DEG)


def epoch_ms(iso: str) -> int:
    """An ISO 8601 time (the form the API docs give `start_captured_at` and `end_captured_at`) in
    epoch milliseconds, the unit of `captured_at`; without an offset it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(iso)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{iso!r} is not an ISO 8601 time") from exc
    return round((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _search_match(image: mw.Image, args) -> bool:
    checks = {
        "organization_id": lambda v: image.organization_id in v.split(","),
        "creator_id": lambda v: image.creator.id in v.split(","),
        "creator_username": lambda v: image.creator.username in v.split(","),
        "sequence_id": lambda v: image.sequence_id in v.split(","),
        "is_pano": lambda v: image.is_pano == (v.lower() == "true"),
        "make": lambda v: image.camera.make.lower() == v.lower(),
        "model": lambda v: image.camera.model.lower() == v.lower(),
        "start_captured_at": lambda v: image.captured_at >= epoch_ms(v),
        "end_captured_at": lambda v: image.captured_at <= epoch_ms(v),
    }
    return all(check(args[name]) for name, check in checks.items() if name in args)
