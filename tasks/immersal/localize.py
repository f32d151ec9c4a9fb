"""Localization, Visual GPS and map lists: one vendor call each."""
from __future__ import annotations

from typing import Any

from tasks.immersal.client import client
from tasks.immersal.inputs import (
    POSITION_FIELDS,
    check_image_object,
    check_intrinsics,
    check_map_ids,
    check_number,
    check_whole,
)
from tasks.immersal.records import MAP_FIELDS
from vendors.geodesy import map_to_wgs84
from vendors.immersal import MAX_LOCALIZE_MAPS, ImmersalNotFound
from workers import app
from workers.jobtask import InvalidInput, JobContext, JobError, job_task
from workers.storage import get_store, object_ref


# --- localization ---
@job_task(app, "immersal.localize")
def localize(job: JobContext, image: str, intrinsics: Any, map_ids: list[int]) -> dict:
    """The camera pose of one image in one of up to 8 maps, or localized: false."""
    return localize_image(job, image, intrinsics, map_ids)


@job_task(app, "immersal.visual_gps")
def visual_gps(job: JobContext, image: str, intrinsics: Any, map_ids: list[int]) -> dict:
    """Localize, then place the camera on the WGS84 ellipsoid through the map's ECEF transform."""
    pose = localize_image(job, image, intrinsics, map_ids)
    if not pose["localized"]:
        return pose
    job.progress("map to WGS84")
    try:
        ecef = client(account=False).ecef(pose["map_id"])
    except ImmersalNotFound as exc:
        raise JobError(f"map {pose['map_id']} has no ECEF transform (none of its images had GPS)",
                       field="map_ids", vendor_message=exc.code) from exc
    latitude, longitude, altitude = map_to_wgs84(pose["position"], ecef)
    return pose | {"latitude": float(latitude), "longitude": float(longitude), "altitude": float(altitude),
                   "ecef": ecef}


def localize_image(job: JobContext, image: str, intrinsics: Any, map_ids: list[int]) -> dict:
    ref = object_ref(image, "image")
    camera = check_intrinsics(intrinsics)
    ids = check_map_ids(map_ids, "map_ids", high=MAX_LOCALIZE_MAPS)
    store = get_store()
    check_image_object(store, ref, "image")
    job.progress("localizing")
    answer = client(account=False).localize(store.read(ref), ids, camera)
    if not answer.get("success"):
        return {"localized": False, "image": ref.uri, "map_ids": ids,
                "message": f"not localized: {ref} matched none of the maps {ids}"}
    return {"localized": True, "image": ref.uri, "map_id": int(answer["map"]),
            "position": [float(answer[k]) for k in POSITION_FIELDS],
            "rotation": [[float(answer[f"r{i}{j}"]) for j in range(3)] for i in range(3)]}


# --- map lists ---
@job_task(app, "immersal.maps_near")
def maps_near(job: JobContext, latitude: float, longitude: float, radius: float, bank: int = 0) -> dict:
    """The maps within `radius` metres of a WGS84 point (/geolist)."""
    latitude, longitude, radius = (check_number(v, k) for k, v in
                                   (("latitude", latitude), ("longitude", longitude), ("radius", radius)))
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise InvalidInput("latitude must be within -90..90 and longitude within -180..180 degrees", field="latitude")
    if radius <= 0:
        raise InvalidInput(f"radius: must be a positive number of metres, got {radius!r}", field="radius")
    check_whole(bank, "bank")
    found = [map_summary(e) for e in client().geolist(latitude, longitude, radius, bank)]
    return {"latitude": latitude, "longitude": longitude, "radius": radius, "count": len(found), "maps": found}


@job_task(app, "immersal.list_maps")
def list_maps(job: JobContext, bank: int = 0) -> dict:
    """All the account's maps (/list), newest first."""
    check_whole(bank, "bank")
    found = [map_summary(e) for e in client().list_jobs(bank)]
    return {"count": len(found), "maps": found}


def map_summary(entry: dict) -> dict:
    return {k: entry[k] for k in MAP_FIELDS if k in entry}
