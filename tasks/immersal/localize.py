"""Localization, Visual GPS and map lists: one vendor call (or two) each, no workspace."""
from __future__ import annotations

from typing import Any

from runtime import JobContext, JobError
from services.images import check_image, check_whole_image
from services.storage import get_store, object_ref
from tasks.immersal.account import client, public_maps
from tasks.immersal.inputs import INTRINSIC_FIELDS, POSITION_FIELDS
from tasks.immersal.records import MAP_FIELDS
from vendors.geodesy import map_to_wgs84
from vendors.immersal import ImmersalNotFound


def localize_image(job: JobContext, image: str, intrinsics: Any, map_ids: list[int]) -> dict:
    ref, store = object_ref(image, "image"), get_store()
    camera = [float(intrinsics[k]) for k in INTRINSIC_FIELDS] if isinstance(intrinsics, dict) else intrinsics
    check_image(store, ref, "image")
    data = store.read(ref, "image")
    check_whole_image(data, ref, "image")
    job.progress("localizing")
    answer = public_maps().localize(data, map_ids, camera)
    if not answer.get("success"):
        return {"localized": False, "image": ref.uri, "map_ids": map_ids,
                "message": f"not localized: {ref} matched none of the maps {map_ids}"}
    return {"localized": True, "image": ref.uri, "map_id": int(answer["map"]),
            "position": [float(answer[k]) for k in POSITION_FIELDS],
            "rotation": [[float(answer[f"r{i}{j}"]) for j in range(3)] for i in range(3)]}


def place_on_earth(job: JobContext, pose: dict) -> dict:
    """The localized camera on the WGS84 ellipsoid, through the map's ECEF transform."""
    job.progress("map to WGS84")
    try:
        ecef = public_maps().ecef(pose["map_id"])
    except ImmersalNotFound as exc:
        raise JobError(f"map {pose['map_id']} has no ECEF transform (none of its images had GPS)",
                       field="map_ids", vendor_message=exc.code) from exc
    latitude, longitude, altitude = map_to_wgs84(pose["position"], ecef)
    return pose | {"latitude": float(latitude), "longitude": float(longitude), "altitude": float(altitude),
                   "ecef": ecef}


def maps_near(latitude: float, longitude: float, radius: float, bank: int) -> dict:
    found = [map_summary(e) for e in client().geolist(latitude, longitude, radius, bank)]
    return {"latitude": latitude, "longitude": longitude, "radius": radius, "count": len(found), "maps": found}


def list_maps(bank: int) -> dict:
    found = [map_summary(e) for e in client().list_jobs(bank)]
    return {"count": len(found), "maps": found}


def map_summary(entry: dict) -> dict:
    return {k: entry[k] for k in MAP_FIELDS if k in entry}
