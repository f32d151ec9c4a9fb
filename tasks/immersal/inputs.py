"""What only a worker can check of an Immersal job's inputs, before any call that changes anything:
the manifest (README, "The manifest"), the images it names, the workspace's room and the maps named.
Types and ranges of the parameters are the catalog's (geoqueue/catalog/immersal.py)."""
from __future__ import annotations

import csv
import io
import math
from concurrent.futures import ThreadPoolExecutor

from geoqueue.s3ref import S3Ref
from runtime import InvalidInput
from services.app_context import carried
from services.images import looks_like_image
from services.snippets import snippet
from services.storage import ObjectStore
from vendors.immersal import ImmersalClient, ImmersalNotFound

POSITION_FIELDS = ("px", "py", "pz")
ROTATION_FIELDS = tuple(f"r{i}{j}" for i in range(3) for j in range(3))
INTRINSIC_FIELDS = ("fx", "fy", "ox", "oy")
GPS_FIELDS = ("latitude", "longitude", "altitude")
REQUIRED_COLUMNS = ("file", "run", "index", *POSITION_FIELDS, *ROTATION_FIELDS, *INTRINSIC_FIELDS)
KNOWN_COLUMNS = frozenset((*REQUIRED_COLUMNS, "anchor", *GPS_FIELDS))
TRUE_WORDS, FALSE_WORDS = frozenset({"1", "true", "yes"}), frozenset({"", "0", "false", "no"})
MAX_MANIFEST_BYTES = 64 * 2 ** 20
PROBLEMS_SHOWN = 10
CHECK_THREADS = 8                 # concurrent S3 reads of image headers while checking inputs


class RowError(ValueError):
    """A manifest row that cannot be read; the message says which field and why."""


# --- checking inputs, before any vendor call ---


def problems_message(what: str, problems: list[str]) -> str:
    shown = "; ".join(problems[:PROBLEMS_SHOWN])
    more = f"; and {len(problems) - PROBLEMS_SHOWN} more" if len(problems) > PROBLEMS_SHOWN else ""
    return f"{what}: {len(problems)} problem{'s' if len(problems) > 1 else ''}: {shown}{more}"


# --- the manifest: one CSV row per image (README, "Immersal manifest") ---
def read_manifest(store: ObjectStore, ref: S3Ref, field: str = "manifest") -> list[dict]:
    """The manifest's rows; `field` names the parameter the manifest's place comes from."""
    size = store.size(ref, field)
    if size is None:
        raise InvalidInput(f"manifest: {ref} does not exist", field="manifest")
    if size > MAX_MANIFEST_BYTES:
        raise InvalidInput(f"manifest: {ref} is {size} bytes, more than {MAX_MANIFEST_BYTES}", field="manifest")
    try:
        text = store.read(ref, field).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"manifest: {ref} is not UTF-8 text", field="manifest") from exc
    return parse_manifest(text, ref.uri)


def parse_manifest(text: str, where: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in KNOWN_COLUMNS]
    gps_columns = [c for c in GPS_FIELDS if c in columns]
    header = []
    if missing:
        header.append(f"missing column(s) {', '.join(missing)}")
    if unknown:  # the header may be any object's first line: its cells are quoted as snippets only
        header.append("unknown column(s) " + ", ".join(f"{columns.index(c) + 1} {snippet(c)}" for c in unknown))
    if gps_columns and len(gps_columns) != len(GPS_FIELDS):
        header.append("latitude, longitude and altitude columns go together")
    if header:
        raise InvalidInput(problems_message(f"manifest {where}", header), field="manifest")
    rows, problems = [], []
    for line, raw in enumerate(reader, start=2):
        try:
            rows.append(parse_row(raw, bool(gps_columns)) | {"line": line})
        except RowError as exc:
            file = (raw.get("file") or "").strip()
            problems.append(f"line {line} ({snippet(file, quoted=False) if file else 'no file'}): {exc}")
    if not rows and not problems:
        problems.append("no image rows")
    problems += clashes(rows)
    if problems:
        raise InvalidInput(problems_message(f"manifest {where}", problems), field="manifest")
    for row in rows:
        del row["line"]
    return rows


def parse_row(raw: dict, has_gps: bool) -> dict:
    problems: list[str] = []

    def text(name: str) -> str:
        value = (raw.get(name) or "").strip()
        if not value:
            problems.append(f"{name} is missing")
        return value

    def number(name: str) -> float:
        value = text(name)
        try:
            parsed = float(value) if value else 0.0
        except ValueError:
            parsed = math.nan
        if not math.isfinite(parsed):
            problems.append(f"{name} is not a number: {snippet(value)}")
            return 0.0
        return parsed

    def whole(name: str) -> int:
        value = text(name)
        if value and not value.isdigit():
            problems.append(f"{name} must be a whole number >= 0, got {snippet(value)}")
        return int(value) if value.isdigit() else 0

    if None in raw:
        problems.append("more cells than columns")
    file = text("file")
    if file and (file.startswith("/") or "\\" in file or ".." in file.split("/")):
        problems.append(f"file must be a name relative to the images prefix, got {snippet(file)}")
    run, index = whole("run"), whole("index")
    anchor_cell = (raw.get("anchor") or "").strip().lower()
    if anchor_cell not in TRUE_WORDS | FALSE_WORDS:
        problems.append(f"anchor must be 1/0, true/false or yes/no, got {snippet(anchor_cell)}")
    position = [number(k) for k in POSITION_FIELDS]
    rotation = [[number(f"r{i}{j}") for j in range(3)] for i in range(3)]
    intrinsics = [number(k) for k in INTRINSIC_FIELDS]
    if intrinsics[0] <= 0 or intrinsics[1] <= 0:
        problems.append("fx and fy must be positive focal lengths in pixels")
    gps = parse_gps(raw, problems) if has_gps else None
    if problems:
        raise RowError(", ".join(problems))
    return {"file": file, "run": run, "index": index, "anchor": anchor_cell in TRUE_WORDS,
            "position": position, "rotation": rotation, "intrinsics": intrinsics, "gps": gps}


def parse_gps(raw: dict, problems: list[str]) -> list[float] | None:
    cells = [(raw.get(k) or "").strip() for k in GPS_FIELDS]
    if not any(cells):
        return None
    if not all(cells):
        problems.append("latitude, longitude and altitude go together: give all three or none")
        return None
    try:
        latitude, longitude, altitude = (float(c) for c in cells)
    except ValueError:
        problems.append(f"latitude, longitude, altitude must be numbers, got {', '.join(map(snippet, cells))}")
        return None
    finite = all(map(math.isfinite, (latitude, longitude, altitude)))
    if not (finite and -90 <= latitude <= 90 and -180 <= longitude <= 180):
        problems.append("latitude must be within -90..90 and longitude within -180..180 degrees")
        return None
    return [latitude, longitude, altitude]


def clashes(rows: list[dict]) -> list[str]:
    """Rows that cannot go together: a (run, index) or a file twice (Immersal would keep one of the
    two images), or two anchors (a later anchor overrides the earlier: which one depends on timing)."""
    problems, seen_pairs, seen_files, anchor = [], {}, {}, None
    for row in rows:
        pair = (row["run"], row["index"])
        if pair in seen_pairs:
            problems.append(f"lines {seen_pairs[pair]} and {row['line']} both have run {pair[0]} index {pair[1]}")
        seen_pairs.setdefault(pair, row["line"])
        if row["file"] in seen_files:
            problems.append(f"lines {seen_files[row['file']]} and {row['line']} both name {snippet(row['file'])}")
        seen_files.setdefault(row["file"], row["line"])
        if row["anchor"]:
            if anchor is not None:
                problems.append(f"lines {anchor} and {row['line']} both set anchor; a map has one anchor image")
            anchor = anchor or row["line"]
    return problems


def check_images(store: ObjectStore, prefix: S3Ref, manifest: S3Ref, rows: list[dict]) -> None:
    """Every row's image exists and is a PNG or JPEG; every object under the prefix has a row."""
    listed = {ref.key: size for ref, size in store.list(prefix, "images") if not ref.key.endswith("/")}
    listed.pop(manifest.key, None)
    wanted = {prefix.child(row["file"]).key: row["file"] for row in rows}
    problems = []
    for key in sorted(wanted):
        if key not in listed:
            problems.append(f"{S3Ref(prefix.bucket, key)} (in the manifest) does not exist")
        elif listed[key] == 0:
            problems.append(f"{S3Ref(prefix.bucket, key)} is empty")
    problems += [f"{S3Ref(prefix.bucket, key)} is not in the manifest" for key in sorted(set(listed) - set(wanted))]
    present = sorted(key for key in wanted if listed.get(key))
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        heads = pool.map(carried(lambda key: store.head_bytes(S3Ref(prefix.bucket, key), 8)), present)
        problems += [f"{S3Ref(prefix.bucket, key)} is not a PNG or JPEG image"
                     for key, head in zip(present, heads, strict=True) if not looks_like_image(head)]
    if problems:
        raise InvalidInput(problems_message(f"images under {prefix}", problems), field="images")


def check_room(vendor: ImmersalClient, bank: int, count: int) -> None:
    """The workspace is emptied before submission, so only the image count itself can be too many yet."""
    limit = int(vendor.status(bank).get("imageMax", 0))
    if count > limit:
        raise InvalidInput(f"images: {count} images, but an Immersal workspace holds at most {limit} (imageMax)",
                           field="images")


def check_maps_exist(vendor: ImmersalClient, map_ids: list[int], field: str, need_done: bool = False) -> None:
    for map_id in map_ids:
        try:
            status = vendor.map_status(map_id)
        except ImmersalNotFound as exc:
            raise InvalidInput(f"{field}: map {map_id} was not found for this account", field=field,
                               vendor_message=exc.code) from exc
        if need_done and status != "done":
            raise InvalidInput(f"{field}: map {map_id} is {status}; only finished (done) maps can be stitched",
                               field=field)


