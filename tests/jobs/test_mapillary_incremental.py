"""Incremental Mapillary harvests (`captured_since`) into the destination of an earlier harvest, with
the stand-in publishing new sequences between two runs: real workers, Redis, moto S3 and the
Mapillary stand-in over HTTP. Ground truth comes from sandbox.mapillary_world with the same additions."""
from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from geoqueue.s3ref import parse_ref
from sandbox.mapillary_world import build_world
from tests.jobs.test_mapillary_jobs import REGION, WALKERS, destination, harvest_params, read_csv
from tests.probes import failed_with

LOOKBACK = timedelta(days=7)         # what a nightly schedule would keep for late uploads
DATASETS = ("seq_dataset.csv", "img_dataset.csv", "img_meta_dataset.csv")


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_epoch_ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


def to_epoch_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def organization_images(world, organization) -> dict[str, int]:
    """The organization's image ids in the region, with their capture times (epoch ms)."""
    return {i.id: i.captured_at for i in world.images_in_bbox(REGION, organization.id)}


def harvest(queue, dest: str, captured_since: datetime):
    params = harvest_params(WALKERS, dest, captured_since=iso(captured_since))
    job = queue.wait(queue.submit("mapillary.harvest", params), timeout=300)
    assert job.state == "succeeded", job.error
    return job


def thumbnails(counters: dict[str, int]) -> Counter:
    return Counter({k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("thumbnail:")})


def test_a_second_run_downloads_only_what_was_published_since_and_appends_each_image_once(queue, store, sandbox):
    sandbox.configure("mapillary", thumbnail_lifetime_s=3600)    # no URL refresh muddles the request counts
    dest = destination()
    first = organization_images(build_world(), WALKERS)
    newest = from_epoch_ms(max(first.values()))

    # The first run, from before any capture: everything, and the newest capture time as its watermark.
    run1 = harvest(queue, dest, datetime(2018, 1, 1, tzinfo=UTC))
    assert run1.result["images_downloaded"] == len(first) and run1.result["watermark"] == iso(newest)
    assert thumbnails(sandbox.counters("mapillary")) == Counter(dict.fromkeys(first, 1))
    written = {name: store.read(parse_ref(run1.result["outputs"][name])) for name in DATASETS}

    # Published since: two sequences captured before that watermark (uploaded late) and one after.
    late, fresh = newest - timedelta(days=2), newest + timedelta(days=1)
    added = [{"organization": WALKERS.slug, "sequences": 2, "captured_at": iso(late)},
             {"organization": WALKERS.slug, "sequences": 1, "captured_at": iso(fresh)}]
    sandbox.configure("mapillary", added_sequences=added)
    sandbox.status("mapillary")    # the stand-in builds its new world now, not inside the run's first call
    world = build_world(added=((WALKERS.slug, 2, to_epoch_ms(late)), (WALKERS.slug, 1, to_epoch_ms(fresh))))
    now = organization_images(world, WALKERS)
    new = set(now) - set(first)
    assert len({world.images[i].sequence_id for i in new}) == 3
    since = newest - LOOKBACK
    overlap = {i for i, captured_at in first.items() if captured_at >= to_epoch_ms(since)}
    assert overlap, "the lookback should meet images the first run took"

    # The second run reaches back past the first's watermark: it downloads the new images only,
    # skips those of the overlap by id, and hands on the newest capture time it took.
    before = sandbox.counters("mapillary")
    run2 = harvest(queue, dest, since)
    downloaded = thumbnails(sandbox.counters("mapillary")) - thumbnails(before)
    assert downloaded == Counter(dict.fromkeys(new, 1))
    assert run2.result["images_downloaded"] == len(new)
    assert run2.result["images_already_present"] == len(overlap)
    assert run2.result["watermark"] == iso(from_epoch_ms(max(now[i] for i in new)))

    # The CSVs: the first run's bytes as they were, then the new rows; every image once.
    for name in DATASETS:
        assert store.read(parse_ref(run2.result["outputs"][name])).startswith(written[name]), name
    _, sequences = read_csv(store, run2.result["outputs"]["seq_dataset.csv"])
    assert sorted(r["seq_id"] for r in sequences) == sorted({world.images[i].sequence_id for i in now})
    for name in ("img_dataset.csv", "img_meta_dataset.csv"):
        _, rows = read_csv(store, run2.result["outputs"][name])
        assert sorted(r["img_id"] for r in rows) == sorted(now), name
    _, meta = read_csv(store, run2.result["outputs"]["img_meta_dataset.csv"])
    assert {r["img_id"]: int(r["captured_at"]) for r in meta} == now
    folder = parse_ref(dest, prefix=True).child("downloaded_images/")
    assert {ref.name for ref, size in store.list(folder) if size} == {f"{i}_256.jpg" for i in now}

    # Run again with nothing new: nothing downloaded, the CSVs unchanged, the same watermark.
    written = {name: store.read(parse_ref(run2.result["outputs"][name])) for name in DATASETS}
    before = sandbox.counters("mapillary")
    run3 = harvest(queue, dest, since)
    assert sandbox.counters("mapillary").get("thumbnail", 0) == before["thumbnail"]
    assert run3.result["images_downloaded"] == 0 and run3.result["watermark"] == run2.result["watermark"]
    assert {name: store.read(parse_ref(run3.result["outputs"][name])) for name in DATASETS} == written


def test_an_incremental_harvest_into_csvs_of_other_columns_fails_before_any_vendor_call(queue, store, sandbox):
    dest = destination()
    store.write(parse_ref(f"{dest}img_meta_dataset.csv"), b"seq_id,img_id,captured_at\r\nS,1,1700000000000\r\n",
                "text/csv")
    job_id = queue.submit("mapillary.harvest", harvest_params(WALKERS, dest, captured_since="2025-01-01"))
    error = failed_with(queue, job_id, "InvalidInput", "destination")
    assert "img_meta_dataset.csv has the columns seq_id,img_id,captured_at" in error["message"]
    assert sandbox.counters("mapillary") == {}
