"""Immersal jobs: maps built from image sets, stitched and restored; localization and Visual GPS."""
from __future__ import annotations

from typing import Any

from geoqueue.params import (
    Flag,
    InvalidParams,
    JobSpec,
    ListOf,
    Number,
    OneOf,
    Options,
    Param,
    Record,
    S3Object,
    S3Prefix,
    Text,
    Type,
    Whole,
)

MAX_CHUNK_SIZE = 100
MAX_PARALLEL = 32
MAX_LOCALIZE_MAPS = 8
# Immersal documents no limit for /fuse (a stitch) nor for maps restored before a build; its /align
# takes at most 32 maps (docs/vendors/immersal.md, "Construction"), and so does the catalog for both.
MAX_STITCH_MAPS = 32
MAX_EXTEND_MAPS = 32
MAP_NAME = Text(pattern="[A-Za-z0-9]+", max_length=256,
                describe="an Immersal map name: letters and digits only (A-Z, a-z, 0-9)")
MAP_ID = Whole(1)

# The construct options Immersal documents (windowSize has its own parameter, window_size).
CONSTRUCT_OPTIONS = Options({
    "featureCount": Whole(1), "featureCountMax": Whole(1), "featureType": Whole(0), "featureFilter": Whole(0),
    "preservePoses": Flag(), "mapTrim": Flag(), "compressionLevel": Whole(0, 9), "dense": Whole(0, 1),
    "trackLengthMin": Whole(2), "triangulationDistanceMax": Number(positive=True),
}, what="construct option")


class Intrinsics(Type):
    """{"fx", "fy", "ox", "oy"} or a list of those four, in pixels, with fx and fy positive."""

    FORM = OneOf((Record({"fx": Number(), "fy": Number(), "ox": Number(), "oy": Number()}),
                  ListOf(Number(), 4, 4)), "{fx, fy, ox, oy} or a list of those four numbers")

    def check(self, value: Any, field: str) -> Any:
        checked = self.FORM.check(value, field)
        fx, fy = (checked["fx"], checked["fy"]) if isinstance(checked, dict) else checked[:2]
        if fx <= 0 or fy <= 0:
            raise InvalidParams(f"{field}: fx and fy must be positive focal lengths in pixels, got {value!r}",
                                field=field)
        return checked

    def schema(self) -> dict[str, Any]:
        return self.FORM.schema()


LOCATE = {
    "image": Param(S3Object(), "the query image, JPEG or PNG", required=True),
    "intrinsics": Param(Intrinsics(), "the camera's {fx, fy, ox, oy} in pixels", required=True),
    "map_ids": Param(ListOf(MAP_ID, 1, MAX_LOCALIZE_MAPS, unique=True, single=True), "up to 8 map ids", required=True),
}

JOBS = (
    JobSpec("immersal.build_map", "A map from the images under a prefix and their manifest.", {
        "images": Param(S3Prefix(), "the images and manifest.csv", required=True),
        "name": Param(MAP_NAME, "the map's name", required=True),
        "manifest": Param(S3Object(), "the manifest, if not <images>/manifest.csv"),
        "bank": Param(Whole(0), "the workspace (image bank), default 0"),
        "window_size": Param(Whole(0), "Immersal's windowSize, default 0 (off)"),
        "options": Param(CONSTRUCT_OPTIONS, "construct options"),
        "extend": Param(ListOf(MAP_ID, 0, MAX_EXTEND_MAPS, unique=True, single=True),
                        f"up to {MAX_EXTEND_MAPS} maps restored into the workspace first"),
        "output": Param(S3Object(output=True), "where the map's .bytes go"),
        "chunk_size": Param(Whole(1, MAX_CHUNK_SIZE), "images per submission task, default 8"),
        "max_parallel": Param(Whole(1, MAX_PARALLEL),
                              "submission tasks at once (default GEOQUEUE_IMMERSAL_MAX_PARALLEL; 2 for an exact "
                              "build)"),
        "exact_captures": Param(Flag(), "one capture in flight at a time, none ever sent twice "
                                        "(default GEOQUEUE_IMMERSAL_EXACT_CAPTURES)"),
    }),
    JobSpec("immersal.stitch", "Fuse finished maps into a new one.", {
        "name": Param(MAP_NAME, "the new map's name", required=True),
        "map_ids": Param(ListOf(MAP_ID, 2, MAX_STITCH_MAPS, unique=True),
                         f"two to {MAX_STITCH_MAPS} finished maps", required=True),
        "output": Param(S3Object(output=True), "where the map's .bytes go"),
    }),
    JobSpec("immersal.restore", "Put a map's images back into its workspace, to extend the map.", {
        "map_id": Param(MAP_ID, "the map", required=True),
        "bank": Param(Whole(0), "the workspace, default 0"),
        "clear": Param(Flag(), "empty the workspace first, default true"),
    }),
    JobSpec("immersal.localize", "The camera pose of one image in one of up to 8 maps.", LOCATE),
    JobSpec("immersal.visual_gps", "Localize, then place the camera on the WGS84 ellipsoid.", LOCATE),
    JobSpec("immersal.maps_near", "The maps within a radius of a WGS84 point.", {
        "latitude": Param(Number(-90, 90), "degrees", required=True),
        "longitude": Param(Number(-180, 180), "degrees", required=True),
        "radius": Param(Number(positive=True), "metres", required=True),
        "bank": Param(Whole(0), "the image bank, default 0"),
    }),
    JobSpec("immersal.list_maps", "All the account's maps, newest first.", {
        "bank": Param(Whole(0), "the image bank, default 0"),
    }),
)
