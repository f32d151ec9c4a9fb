"""What only a worker can check of a survey's inputs, before anything is created at the vendor:
the images under the prefix, the options against the server's, the project, the output prefix.
Types and ranges of every parameter are the job catalog's (geoqueue.catalog.dronemapper)."""
from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from geoqueue.s3ref import S3Ref
from vendors.dronemapper import DroneMapperClient
from vendors.errors import NotFound
from workers.errors import InvalidInput
from workers.settings import get_settings
from workers.storage import ObjectStore, get_store, output_area

JPEG_MAGIC = b"\xff\xd8\xff"
MIN_IMAGES = 2
CHECK_THREADS = 8               # concurrent S3 reads of image headers while checking inputs
PROBLEMS_SHOWN = 10


def problems(what: str, found: list[str]) -> str:
    shown = ", ".join(found[:PROBLEMS_SHOWN]) + (f" and {len(found) - PROBLEMS_SHOWN} more"
                                                   if len(found) > PROBLEMS_SHOWN else "")
    return f"images: {what} ({len(found)}): {shown}"


def find_images(store: ObjectStore, prefix: S3Ref) -> dict[str, tuple[S3Ref, int]]:
    """Vendor filename -> (object, size) for every object under the prefix; each must be a JPEG."""
    objects = [(ref, size) for ref, size in store.list(prefix, "images") if not ref.key.endswith("/")]
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


def option_names(options: dict | list) -> list[str]:
    """The names of options given as {name: value} or as the doc's [{"name": ..., "value": ...}]."""
    return [str(name) for name in options] if isinstance(options, dict) else [str(o["name"]) for o in options]


def check_option_names(vendor: DroneMapperClient, options: dict | list | None, field: str = "options") -> None:
    """Names the processing nodes do not know are refused before anything is created or uploaded."""
    if not options:
        return
    known = {o["name"] for o in vendor.available_options()}
    unknown = [name for name in option_names(options) if name not in known]
    if known and unknown:
        raise InvalidInput(f"{field}: unknown DroneMapper option(s): {', '.join(unknown)}", field=field)


def existing_project(vendor: DroneMapperClient, project_id: int) -> int:
    try:
        vendor.get_project(project_id)
    except NotFound as exc:
        raise InvalidInput(f"project: DroneMapper project {project_id} does not exist "
                           "(or this account cannot see it)", field="project") from exc
    return project_id


def delivery_prefix(job_id: str, output: str | None) -> S3Ref:
    """Where the assets go: the given `output`, which must lie inside the fleet's output area, or
    dronemapper/<job id>/ there."""
    if output is not None:
        return get_store().output(output, "output", prefix=True)
    return output_area(get_settings()).child(f"dronemapper/{job_id}/")


def check_output(store: ObjectStore, job_id: str, output: str | None) -> S3Ref:
    """The delivery prefix, its bucket there to write to."""
    target = delivery_prefix(job_id, output)
    next(iter(store.list(target, "output")), None)
    return target
