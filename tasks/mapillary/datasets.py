"""Harvest: the toolset's three CSV datasets."""
from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from geoqueue.s3ref import S3Ref
from services.storage import ObjectStore
from tasks.mapillary.inputs import HarvestPlan
from tasks.mapillary.records import HarvestCheckpoints
from vendors.mapillary.graph import MAX_IDS_PER_BATCH

SEQUENCE_DATASET, IMAGE_DATASET, METADATA_DATASET = "seq_dataset.csv", "img_dataset.csv", "img_meta_dataset.csv"


# --- harvest: the datasets ---
def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def write_csv(store: ObjectStore, ref: S3Ref, header: list[str], rows: Iterable[list[Any]]) -> None:
    """Stream rows into the object through a spooled file (memory stays bounded for big harvests)."""
    with tempfile.SpooledTemporaryFile(max_size=16 * 2 ** 20) as spool:
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        text.detach()    # flushes into the spool and leaves it open for the upload
        spool.seek(0)
        store.upload_stream(ref, spool, "text/csv")


def write_datasets(store: ObjectStore, plan: HarvestPlan, sequences: list[str],
                   checkpoints: HarvestCheckpoints) -> dict[str, str]:
    """The toolset's three CSVs, same names and columns: seq_dataset (org_id, seq_id), img_dataset
    (seq_id, img_id) and img_meta_dataset (seq_id, img_id, then the fields asked for)."""
    image_ids, batches = checkpoints.all_image_ids(), checkpoints.all_batches()

    def metadata_rows() -> Iterator[list[Any]]:
        for sequence_id in sequences:
            for number in range(math.ceil(len(image_ids.get(sequence_id, [])) / MAX_IDS_PER_BATCH)):
                # A sequence that failed midway has no checkpoint for its later batches.
                for image_id, meta in batches.get((sequence_id, number), {"rows": []})["rows"]:
                    yield [sequence_id, image_id, *(cell(meta.get(f.split(".", 1)[0])) for f in plan.fields)]

    datasets = {
        SEQUENCE_DATASET: (["org_id", "seq_id"], ([plan.owner_id, s] for s in sequences)),
        IMAGE_DATASET: (["seq_id", "img_id"], ([s, i] for s in sequences for i in image_ids.get(s, []))),
        METADATA_DATASET: (["seq_id", "img_id", *plan.fields], metadata_rows()),
    }
    for name, (header, rows) in datasets.items():
        write_csv(store, plan.dataset_ref(name), header, rows)
    return {name: plan.dataset_ref(name).uri for name in datasets} | {"images": plan.images_prefix.uri}
