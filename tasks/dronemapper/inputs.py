"""DroneMapper survey inputs, checked before any vendor call: the image prefix (JPEGs, at least
two), options against the server's names, assets, the output prefix and the project."""
from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from geoqueue.s3ref import S3Ref
from vendors.dronemapper import DroneMapperClient
from vendors.errors import NotFound
from workers.jobtask import InvalidInput
from workers.settings import get_settings
from workers.storage import ObjectStore, prefix_ref

JPEG_MAGIC = b"\xff\xd8\xff"
DEFAULT_ASSETS = ("orthophoto.tif", "dsm.tif", "pointcloud.ply")
# The doc's assets and WebODM's ASSETS_MAP names (facts/webodm.md §1), with the doc's pointcloud.ply.
KNOWN_ASSETS = frozenset({
    "all.zip", "orthophoto.tif", "orthophoto.png", "orthophoto.mbtiles", "orthophoto.kmz", "dsm.tif", "dtm.tif",
    "pointcloud.ply", "georeferenced_model.las", "georeferenced_model.laz", "georeferenced_model.ply",
    "georeferenced_model.csv", "textured_model.zip", "textured_model.glb", "cameras.json", "shots.geojson",
    "report.pdf"})
MIN_IMAGES = 2
MAX_PARALLEL_UPLOADS = 32
CHECK_THREADS = 8               # concurrent S3 reads of image headers while checking inputs
PROBLEMS_SHOWN = 10


def check_options(options: Any, field: str = "options") -> dict | list:
    if options is None:
        return {}
    if isinstance(options, dict):
        return options
    if isinstance(options, list) and all(isinstance(o, dict) and "name" in o and "value" in o for o in options):
        return options
    raise InvalidInput(f"{field}: give options as {{name: value}} or [{{\"name\": ..., \"value\": ...}}], "
                       f"not {options!r}", field=field)


def option_names(options: dict | list) -> list[str]:
    return [str(name) for name in options] if isinstance(options, dict) else [str(o["name"]) for o in options]


def check_option_names(vendor: DroneMapperClient, options: dict | list, field: str = "options") -> None:
    """Names the processing nodes do not know are refused before anything is created or uploaded."""
    if not options:
        return
    known = {o["name"] for o in vendor.available_options()}
    unknown = [name for name in option_names(options) if name not in known]
    if known and unknown:
        raise InvalidInput(f"{field}: unknown DroneMapper option(s): {', '.join(unknown)}", field=field)


def check_assets(assets: Any) -> list[str]:
    if assets is None:
        return list(DEFAULT_ASSETS)
    if not isinstance(assets, list) or not assets or not all(isinstance(a, str) for a in assets):
        raise InvalidInput(f"assets: give a list of asset names, not {assets!r}", field="assets")
    unknown = [a for a in assets if a not in KNOWN_ASSETS]
    if unknown:
        raise InvalidInput(f"assets: unknown asset(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_ASSETS))}",
                           field="assets")
    return list(dict.fromkeys(assets))


def check_parallel(value: Any) -> int:
    if value is None:
        return get_settings().dronemapper_max_parallel_uploads
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARALLEL_UPLOADS:
        raise InvalidInput(f"max_parallel_uploads: {value!r} is not a whole number from 1 to {MAX_PARALLEL_UPLOADS}",
                           field="max_parallel_uploads")
    return value


def check_project_param(project: Any, project_name: Any) -> int | None:
    if project is not None and project_name is not None:
        raise InvalidInput("project: give an existing project or a project_name to create, not both", field="project")
    if project_name is not None and (not isinstance(project_name, str) or not project_name.strip()):
        raise InvalidInput(f"project_name: {project_name!r} is not a name", field="project_name")
    if project is None:
        return None
    if isinstance(project, bool) or not str(project).isdigit():
        raise InvalidInput(f"project: {project!r} is not a DroneMapper project id", field="project")
    return int(project)


def problems(what: str, found: list[str]) -> str:
    shown = ", ".join(found[:PROBLEMS_SHOWN]) + (f" and {len(found) - PROBLEMS_SHOWN} more"
                                                   if len(found) > PROBLEMS_SHOWN else "")
    return f"images: {what} ({len(found)}): {shown}"


def find_images(store: ObjectStore, prefix: S3Ref) -> dict[str, tuple[S3Ref, int]]:
    """Vendor filename -> (object, size) for every object under the prefix; each must be a JPEG."""
    try:
        objects = [(ref, size) for ref, size in store.list(prefix) if not ref.key.endswith("/")]
    except ClientError as exc:
        raise InvalidInput(f"images: {prefix} cannot be listed ({s3_code(exc)})", field="images") from exc
    if len(objects) < MIN_IMAGES:
        raise InvalidInput(f"images: a survey needs at least {MIN_IMAGES} images; found {len(objects)} under {prefix}",
                           field="images")
    by_name: dict[str, list[S3Ref]] = defaultdict(list)
    for ref, _size in objects:
        by_name[ref.name].append(ref)
    clashes = sorted(str(refs[1]) for refs in by_name.values() if len(refs) > 1)
    if clashes:  # the vendor keeps one file per name: a second one would silently replace the first
        raise InvalidInput(problems("file names found twice", clashes), field="images")
    empty = [str(ref) for ref, size in objects if size == 0]
    if empty:
        raise InvalidInput(problems("empty objects", empty), field="images")
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        heads = list(pool.map(lambda item: store.head_bytes(item[0], len(JPEG_MAGIC)), objects))
    not_jpeg = [str(ref) for (ref, _), head in zip(objects, heads) if head != JPEG_MAGIC]
    if not_jpeg:
        raise InvalidInput(problems("not JPEG images", not_jpeg), field="images")
    return {ref.name: (ref, size) for ref, size in objects}


def check_output(store: ObjectStore, output: Any, job_id: str) -> S3Ref:
    target = prefix_ref(output, "output") if output is not None else S3Ref(get_settings().s3_bucket,
                                                                              f"dronemapper/{job_id}/")
    try:
        next(iter(store.list(target)), None)
    except ClientError as exc:
        raise InvalidInput(f"output: {target} cannot be written ({s3_code(exc)})", field="output") from exc
    return target


def s3_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "error")


def existing_project(vendor: DroneMapperClient, project_id: int) -> int:
    try:
        vendor.get_project(project_id)
    except NotFound as exc:
        raise InvalidInput(f"project: DroneMapper project {project_id} does not exist "
                           "(or this account cannot see it)", field="project") from exc
    return project_id
