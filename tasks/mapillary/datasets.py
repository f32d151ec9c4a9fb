"""Harvest: the toolset's three CSV datasets, written whole, or appended to by an incremental harvest."""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from geoqueue.s3ref import S3Ref
from runtime import InvalidInput
from services.storage import ObjectStore, typed_errors
from tasks.mapillary.inputs import HarvestPlan
from vendors.mapillary.graph import MAX_IDS_PER_BATCH

SEQUENCE_DATASET, IMAGE_DATASET, METADATA_DATASET = "seq_dataset.csv", "img_dataset.csv", "img_meta_dataset.csv"
KEY_COLUMN = 1                 # what a row is about, in every dataset its second column: seq_id, img_id, img_id
SPOOL_BYTES = 16 * 2 ** 20     # a CSV bigger than this spools to disk on its way to S3
HEADER_BYTES = 64 * 1024       # read to find a CSV's header line, far longer than any


# --- harvest: the datasets ---
def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def write_csv(store: ObjectStore, ref: S3Ref, header: list[str], rows: Iterable[list[Any]]) -> None:
    """Stream rows into the object through a spooled file (memory stays bounded for big harvests)."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        text.detach()    # flushes into the spool and leaves it open for the upload
        spool.seek(0)
        store.upload_stream(ref, spool, "text/csv")


def refuse_other_columns(ref: S3Ref, found: list[str], header: list[str]) -> None:
    if found != header:
        raise InvalidInput(f"destination: {ref} has the columns {','.join(found) or '(none)'} where this harvest "
                           f"writes {','.join(header)}: ask for the same fields, or harvest into another destination",
                           field="destination")


def copy_rows_held(store: ObjectStore, ref: S3Ref, header: list[str], spool) -> set[str] | None:
    """The object's bytes into the spool, and the keys of its rows; None when there is no object."""
    if not store.size(ref, "destination"):
        return None
    with typed_errors(ref, "destination"):    # a read that broke off is worth another try
        shutil.copyfileobj(store.open(ref, "destination"), spool)
    spool.seek(0)
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    reader = csv.reader(text)
    refuse_other_columns(ref, next(reader, []), header)
    held = {row[KEY_COLUMN] for row in reader if len(row) > KEY_COLUMN}
    text.detach()
    spool.seek(-1, io.SEEK_END)
    if spool.read(1) != b"\n":
        spool.write(b"\r\n")                  # ends its last line, as csv.writer would have
    return held


def append_csv(store: ObjectStore, ref: S3Ref, header: list[str], rows: Iterable[list[Any]]) -> None:
    """The rows whose key the object does not hold yet, after everything it holds, byte for byte.
    S3 cannot append to an object: it is written again whole, through a spooled file. Appending
    twice the same rows (a finish that runs again) adds nothing."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        held = copy_rows_held(store, ref, header, spool)
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        writer = csv.writer(text)
        if held is None:
            writer.writerow(header)
        held = held or set()
        for row in rows:
            if str(row[KEY_COLUMN]) not in held:
                held.add(str(row[KEY_COLUMN]))
                writer.writerow(row)
        text.detach()
        spool.seek(0)
        store.upload_stream(ref, spool, "text/csv")


def dataset_headers(plan: HarvestPlan) -> dict[str, list[str]]:
    return {SEQUENCE_DATASET: ["org_id", "seq_id"], IMAGE_DATASET: ["seq_id", "img_id"],
            METADATA_DATASET: ["seq_id", "img_id", *plan.fields]}


def check_appendable(store: ObjectStore, plan: HarvestPlan) -> None:
    """An incremental harvest appends rows to the destination's CSVs, so theirs must be its columns:
    refused before any image is fetched rather than at the end."""
    for name, header in dataset_headers(plan).items():
        ref = plan.dataset_ref(name)
        if store.size(ref, "destination"):
            first_line = store.head_bytes(ref, HEADER_BYTES).decode("utf-8", "replace").splitlines()[:1]
            refuse_other_columns(ref, next(csv.reader(first_line), []), header)


def write_datasets(store: ObjectStore, plan: HarvestPlan, sequences: list[str], image_ids: dict[str, list[str]],
                   batches: dict[tuple[str, int], dict]) -> dict[str, str]:
    """The toolset's three CSVs, same names and columns: seq_dataset (org_id, seq_id), img_dataset
    (seq_id, img_id) and img_meta_dataset (seq_id, img_id, then the fields asked for). With
    captured_since, only the images in its window, appended to what the destination holds."""

    def metadata_rows() -> Iterator[tuple[str, str, dict]]:
        for sequence_id in sequences:
            for number in range(math.ceil(len(image_ids.get(sequence_id, [])) / MAX_IDS_PER_BATCH)):
                # A sequence that failed midway has no checkpoint for its later batches.
                for image_id, meta in batches.get((sequence_id, number), {"rows": []})["rows"]:
                    if plan.in_window(meta.get("captured_at")):
                        yield sequence_id, image_id, meta

    # An incremental harvest lists the images it took; a whole one every id of a sequence, found or not.
    taken = {image_id for _, image_id, _ in metadata_rows()} if plan.incremental else None
    rows = {
        SEQUENCE_DATASET: ([plan.owner_id, s] for s in sequences),
        IMAGE_DATASET: ([s, i] for s in sequences for i in image_ids.get(s, []) if taken is None or i in taken),
        METADATA_DATASET: ([s, i, *(cell(meta.get(f.split(".", 1)[0])) for f in plan.fields)]
                           for s, i, meta in metadata_rows()),
    }
    write = append_csv if plan.incremental else write_csv
    for name, header in dataset_headers(plan).items():
        write(store, plan.dataset_ref(name), header, rows[name])
    return {name: plan.dataset_ref(name).uri for name in rows} | {"images": plan.images_prefix.uri}
