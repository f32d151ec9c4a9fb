"""Immersity AI jobs: a disparity map for one image, a batch over an S3 prefix, animations.

    immersity.disparity  {"image": "s3://b/k.jpg", "output"?: "s3://b/out.png", "options"?: {...}, "animation"?: {...}}
    immersity.batch      {"prefix": "s3://b/photos/", "output_prefix"?: "s3://b/out/", "options"?, "animation"?,
                          "max_parallel"?}
    immersity.animation  {"image": "s3://b/k.jpg", "disparity": "s3://b/k.png", "output"?: "s3://b/k.mp4",
                          "options"?: {...}}

A batch fans out one `immersity.item` per image, `max_parallel` at a time; each image's outcome is
recorded once, and the job fails naming the images that failed. Every job reserves the credits
it may spend before its first call, and lets go of the reservation when it ends.
"""
from __future__ import annotations

import functools
from typing import Any

from config.settings import get_settings
from geoqueue.s3ref import S3Ref
from runtime import PENDING, InvalidInput, JobContext, on_job_end, task
from runtime.fanout import Fanout
from services.images import check_image
from services.storage import default_outputs, get_store, object_ref, prefix_ref
from tasks.immersity.records import Credits
from tasks.immersity.workflow import calls_per_image, client, output_for, paid_call, process_image, reserve_credits

ITEM_TASK = "immersity.item"


def outputs_of(job_id: str) -> S3Ref:
    """Where the job's outputs go when it names none: immersity/<job id>/ in its app's part."""
    return default_outputs(job_id, "immersity")


@on_job_end
def release_credits(job_id: str) -> None:
    Credits().budget.release(job_id)


@task("immersity.disparity", kind="job")
def disparity(job: JobContext, image: str, output: str | None = None, options: dict | None = None,
              animation: dict | None = None, animation_output: str | None = None) -> dict[str, Any]:
    """A disparity map for one image (and its animation when `animation` is given)."""
    source, store = object_ref(image, "image"), get_store()
    out = store.output(output, "output") if output else output_for(source, outputs_of(job.id), ".png")
    anim_out = None
    if animation is not None:
        suffix = "." + animation.get("animationType", "mp4")
        anim_out = (store.output(animation_output, "animation_output") if animation_output
                    else output_for(source, outputs_of(job.id), suffix))
    check_image(get_store(), source, "image")
    reserve_credits(job.id, 1, calls_per_image(animation))
    job.progress("disparity", 0, 1)
    outcome = process_image(job, source, out, options or {}, animation, anim_out)
    job.progress("done", 1, 1)
    return outcome


@task("immersity.animation", kind="job")
def animation(job: JobContext, image: str, disparity: str, output: str | None = None,
              options: dict | None = None) -> dict[str, Any]:
    """An animation from an image and its disparity map."""
    source, depth, store = object_ref(image, "image"), object_ref(disparity, "disparity"), get_store()
    options = options or {}
    kind = options.get("animationType", "mp4")
    out = store.output(output, "output") if output else output_for(source, outputs_of(job.id), f".{kind}")
    check_image(get_store(), source, "image")
    check_image(get_store(), depth, "disparity")
    reserve_credits(job.id, 1, [("animation", kind)])
    job.progress("animation", 0, 1)
    vendor = client()
    done = paid_call(job, "animation", kind, out, lambda: vendor.animation(
        store.presign_get(source), store.presign_get(depth), store.presign_put(out), correlation_id=f"{job.id}:anim",
        **options))
    job.progress("done", 1, 1)
    return {"image": source.uri, "disparity": depth.uri, "animation": out.uri, "credits": done["credits"],
            "animation_bytes": done["bytes"]}


@task("immersity.batch", kind="job")
def batch(job: JobContext, prefix: str, output_prefix: str | None = None, options: dict | None = None,
          animation: dict | None = None, max_parallel: int | None = None) -> Any:
    """Disparity maps for every object under an S3 prefix, a bounded number at a time."""
    source, store = prefix_ref(prefix, "prefix"), get_store()
    if output_prefix:
        store.output(output_prefix, "output_prefix", prefix=True)
    images = [ref.key for ref, _size in store.list(source, "prefix") if not ref.key.endswith("/")]
    if not images:
        raise InvalidInput(f"prefix: nothing found under {source}", field="prefix")
    reserve_credits(job.id, len(images), calls_per_image(animation))
    job.progress("images", 0, len(images))
    Fanout().start(job.id, images, ITEM_TASK, max_parallel or get_settings().immersity_max_parallel)
    return PENDING


@functools.lru_cache(maxsize=64)
def batch_places(job_id: str, prefix: str, output_prefix: str | None) -> tuple[str, S3Ref]:
    """A batch's source bucket and output prefix, worked out once per batch in a worker process
    (every image of it asks)."""
    outputs = get_store().output(output_prefix, "output_prefix", prefix=True) if output_prefix \
        else outputs_of(job_id)
    return prefix_ref(prefix, "prefix").bucket, outputs


def batch_image(job: JobContext, item: str) -> dict[str, Any]:
    """One image of a batch: its disparity map (and animation)."""
    params = job.params
    bucket, outputs = batch_places(job.id, params["prefix"], params.get("output_prefix"))
    source = S3Ref(bucket, item)
    check_image(get_store(), source, "prefix")
    animation = params.get("animation")
    animation_out = output_for(source, outputs, "." + animation.get("animationType", "mp4")) if animation else None
    return process_image(job, source, output_for(source, outputs, ".png"), params.get("options") or {}, animation,
                         animation_out, field="prefix")


def finish_batch(job: JobContext) -> None:
    """Every image has an outcome: the job succeeds, or fails naming the images that failed."""
    items = job.ledger.items(job.id)
    failed = {k: v for k, v in items.items() if v.get("state") != "succeeded"}
    result = {
        "images": len(items), "succeeded": len(items) - len(failed), "failed": len(failed),
        "credits": job.record.credits,
        "outputs": {v["image"]: {k: v[k] for k in ("disparity", "animation") if k in v}
                    for v in items.values() if v.get("state") == "succeeded"},
    }
    bucket, _ = batch_places(job.id, job.params["prefix"], job.params.get("output_prefix"))
    names = sorted(S3Ref(bucket, key).uri for key in failed)
    Fanout().finish(job.id, result, failed and {
        "type": "SomeItemsFailed", "message": f"{len(failed)} of {len(items)} images failed: {', '.join(names[:10])}",
        "items": {S3Ref(bucket, key).uri: v["error"] for key, v in failed.items()}})


item = task(ITEM_TASK, kind="item", finish=finish_batch)(batch_image)
