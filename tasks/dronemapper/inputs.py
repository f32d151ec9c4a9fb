"""What only a worker can check of a survey's inputs, before anything is created at the vendor:
the images under the prefix, the options against the server's, the project, the output prefix.
Types and ranges of every parameter are the job catalog's (geoqueue.catalog.dronemapper)."""
from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from geoqueue.s3ref import S3Ref
from runtime import InvalidInput
from services.app_context import carried
from services.storage import ObjectStore, default_outputs, get_store
from vendors.dronemapper.client import DroneMapperClient
from vendors.errors import NotFound

JPEG_MAGIC = b"\xff\xd8\xff"
MIN_IMAGES = 2
CHECK_THREADS = 8               # concurrent S3 reads of image headers while checking inputs
PROBLEMS_SHOWN = 10
BOOL_TEXT = ("true", "false", "1", "0", "yes", "no", "on", "off")   # what a node parses as a bool


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
        heads = list(pool.map(carried(lambda item: store.head_bytes(item[0], len(JPEG_MAGIC))), objects))
    not_jpeg = [str(ref) for (ref, _), head in zip(objects, heads, strict=True) if head != JPEG_MAGIC]
    if not_jpeg:
        raise InvalidInput(problems("not JPEG images", not_jpeg), field="images")
    return {ref.name: (ref, size) for ref, size in objects}


def option_pairs(options: dict | list) -> list[tuple[str, object]]:
    """(name, value) of options given as {name: value} or as the doc's [{"name": ..., "value": ...}]."""
    return [(str(k), v) for k, v in options.items()] if isinstance(options, dict) else \
        [(str(o["name"]), o["value"]) for o in options]


def as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def refusal(described: dict, value: object) -> str | None:
    """What the server's description of an option (its type, an enum's domain) says against `value`,
    as leniently as a node parses it: "true" is a bool, "2.5" a float. None when nothing does."""
    kind, domain = described.get("type"), described.get("domain")
    if kind == "bool" and not (isinstance(value, bool) or isinstance(value, str) and value.lower() in BOOL_TEXT):
        return "true or false"
    if kind in ("int", "float"):
        number = as_number(value)
        if number is None or (kind == "int" and not number.is_integer()):
            return "a whole number" if kind == "int" else "a number"
    if kind == "enum" and isinstance(domain, list) and str(value) not in map(str, domain):
        return "one of " + ", ".join(map(str, domain))
    return None


def check_options(vendor: DroneMapperClient, options: dict | list | None, field: str = "options") -> None:
    """Names the processing nodes do not know, and values their description refuses, are refused
    before anything is created or uploaded."""
    if not options:
        return
    known = {o["name"]: o for o in vendor.available_options()}
    if not known:
        return  # a server that describes no options: it has the last word
    unknown = [name for name, _value in option_pairs(options) if name not in known]
    if unknown:
        raise InvalidInput(f"{field}: unknown DroneMapper option(s): {', '.join(unknown)}", field=field)
    refused = [f"{name}: {value!r} is not {expected}" for name, value in option_pairs(options)
               if (expected := refusal(known[name], value))]
    if refused:
        raise InvalidInput(f"{field}: {'; '.join(refused)}", field=field)


def existing_project(vendor: DroneMapperClient, project_id: int) -> int:
    try:
        vendor.get_project(project_id)
    except NotFound as exc:
        raise InvalidInput(f"project: DroneMapper project {project_id} does not exist "
                           "(or this account cannot see it)", field="project") from exc
    return project_id


def delivery_prefix(job_id: str, output: str | None) -> S3Ref:
    """Where the assets go: the given `output`, which must lie inside the app's part of the output
    area, or dronemapper/<job id>/ there."""
    if output is not None:
        return get_store().output(output, "output", prefix=True)
    return default_outputs(job_id, "dronemapper")


def check_output(store: ObjectStore, job_id: str, output: str | None) -> S3Ref:
    """The delivery prefix, its bucket there to write to."""
    target = delivery_prefix(job_id, output)
    next(iter(store.list(target, "output")), None)
    return target
