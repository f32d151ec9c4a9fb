"""Immersity AI jobs: a disparity map for one image, a batch over an S3 prefix, animations.

    immersity.disparity  {"image": "s3://b/k.jpg", "output"?: "s3://b/out.png", "options"?: {...}, "animation"?: {...}}
    immersity.batch      {"prefix": "s3://b/photos/", "output_prefix"?: "s3://b/out/", "options"?, "animation"?, "max_parallel"?}
    immersity.animation  {"image": "s3://b/k.jpg", "disparity": "s3://b/k.png", "output"?: "s3://b/k.mp4", "options"?: {...}}
"""
from __future__ import annotations

from typing import Any

from geoqueue.s3ref import BadReference, S3Ref, parse_ref
from tasks.immersity.workflow import (
    budget,
    check_image,
    client,
    default_outputs,
    output_for,
    plan,
    price,
    process_image,
    reserve_credits,
)
from vendors.errors import TransientError, VendorError
from workers import app
from workers.effects import charge_once, once_into_object
from workers.fanout import Fanout
from workers.inputs import object_ref
from workers.jobtask import (
    PENDING,
    InvalidInput,
    JobContext,
    JobTask,
    error_dict,
    job_task,
    publish_progress,
    retry_or_raise,
)
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings
from workers.storage import get_store


# --- jobs ---
@job_task(app, "immersity.disparity")
def disparity(job: JobContext, image: str, output: str | None = None, options: dict | None = None,
              animation: dict | None = None, animation_output: str | None = None) -> dict[str, Any]:
    """A disparity map for one image (and its animation when `animation` is given)."""
    source = object_ref(image, "image")
    chosen = plan({"options": options, "animation": animation})
    out = object_ref(output, "output") if output else output_for(source, default_outputs(job.id), ".png")
    anim_out = None
    if animation is not None:
        suffix = "." + animation.get("animationType", "mp4")
        anim_out = object_ref(animation_output, "animation_output") if animation_output else output_for(source, default_outputs(job.id), suffix)
    check_image(source)
    reserve_credits(job.id, 1, animation)
    job.progress("disparity", 0, 1)
    try:
        outcome = process_image(job.id, source, out, chosen["options"], animation, anim_out)
    finally:
        budget().release(job.id)
    job.progress("done", 1, 1)
    return outcome


@job_task(app, "immersity.animation")
def animation(job: JobContext, image: str, disparity: str, output: str | None = None,
              options: dict | None = None) -> dict[str, Any]:
    """An animation from an image and its disparity map."""
    source, depth = object_ref(image, "image"), object_ref(disparity, "disparity")
    options = dict(options or {})
    plan({"animation": options})
    kind = options.get("animationType", "mp4")
    out = object_ref(output, "output") if output else output_for(source, default_outputs(job.id), f".{kind}")
    check_image(source)
    check_image(depth, "disparity")
    reserve_credits(job.id, 1, None)  # one call, priced as an animation below
    job.progress("animation", 0, 1)
    store = get_store()
    vendor = client()

    def call() -> None:
        vendor.animation(store.presign_get(source), store.presign_get(depth), store.presign_put(out),
                         correlation_id=f"{job.id}:anim", **options)

    try:
        outcome = {"image": source.uri, "disparity": depth.uri, "animation": out.uri, "credits": 0}
        effect = f"immersity:{out.uri}"
        who = once_into_object(get_redis(), store, effect, out, call, get_settings().immersity_timeout)
        if charge_once(get_redis(), job.id, effect, who):
            cost = price("animation", kind)
            job.ledger.add_credits(job.id, cost)
            budget().spend(job.id, cost)
            outcome["credits"] = cost
    finally:
        budget().release(job.id)
    size = store.size(out)
    if not size:
        raise VendorError(f"Immersity reported success but {out} is missing or empty", vendor="immersity")
    job.progress("done", 1, 1)
    return outcome | {"animation_bytes": size}


def dispatch_item(job_id: str, item: str) -> None:
    item_task.apply_async(kwargs={"job_id": job_id, "item": item})


@job_task(app, "immersity.batch")
def batch(job: JobContext, prefix: str, output_prefix: str | None = None, options: dict | None = None,
          animation: dict | None = None, max_parallel: int | None = None) -> Any:
    """Disparity maps for every object under an S3 prefix, a bounded number at a time."""
    try:
        source = parse_ref(prefix, "prefix", prefix=True)
        if output_prefix:
            parse_ref(output_prefix, "output_prefix", prefix=True)
    except BadReference as exc:
        raise InvalidInput(str(exc), field="prefix" if "prefix:" in str(exc) else "output_prefix") from exc
    plan({"options": options, "animation": animation})
    images = [ref.key for ref, _size in get_store().list(source) if not ref.key.endswith("/")]
    if not images:
        raise InvalidInput(f"prefix: nothing found under {source}", field="prefix")
    reserve_credits(job.id, len(images), animation)
    job.progress("images", 0, len(images))
    fanout = Fanout(get_redis(), job.ledger)
    fanout.start(job.id, images, "immersity.item", max_parallel or get_settings().immersity_max_parallel, dispatch_item)
    return PENDING


@app.task(bind=True, base=JobTask, name="immersity.item")
def item_task(self, job_id: str, item: str) -> dict[str, Any]:
    """One image of a batch. Its outcome, success or a typed error, is recorded once."""
    ledger = get_ledger()
    job = ledger.get(job_id)
    if job is None or job.finished:
        return {"job_id": job_id, "item": item, "skipped": True}
    if ledger.item_is_recorded(job_id, item):
        # A redelivery: the worker that recorded it may have died before finishing the batch.
        if Fanout(get_redis(), ledger).complete(job_id):
            finish_batch(job_id)
        return {"job_id": job_id, "item": item, "skipped": True}
    params = job.params
    source = S3Ref(parse_ref(params["prefix"], "prefix", prefix=True).bucket, item)
    out_prefix = parse_ref(params["output_prefix"], "output_prefix", prefix=True) if params.get("output_prefix") else default_outputs(job_id)
    animation = params.get("animation")
    kind = (animation or {}).get("animationType", "mp4")
    try:
        outcome = {"state": "succeeded", **process_image(
            job_id, source, output_for(source, out_prefix, ".png"), params.get("options") or {},
            animation, output_for(source, out_prefix, f".{kind}") if animation is not None else None)}
    except TransientError as exc:
        retry_or_raise(self, exc)
        outcome = {"state": "failed", "image": source.uri, "error": error_dict(exc)}
    except (VendorError, InvalidInput) as exc:
        outcome = {"state": "failed", "image": source.uri, "error": error_dict(exc)}
    fanout = Fanout(get_redis(), ledger)
    done = fanout.finish_item(job_id, item, outcome, dispatch_item)
    ledger.progress(job_id, "images", ledger.finished_count(job_id))
    publish_progress(self, job_id, "images", ledger.finished_count(job_id), int(job.total or 0))
    if done:
        finish_batch(job_id)
    return {"job_id": job_id, "item": item, "state": outcome["state"]}


def finish_batch(job_id: str) -> None:
    """Every image has an outcome: the job succeeds, or fails naming the images that failed."""
    ledger = get_ledger()
    items = ledger.items(job_id)
    failed = {k: v for k, v in items.items() if v.get("state") != "succeeded"}
    record = ledger.get(job_id)
    result = {
        "images": len(items), "succeeded": len(items) - len(failed), "failed": len(failed),
        "credits": record.credits if record else 0,
        "outputs": {v["image"]: {k: v[k] for k in ("disparity", "animation") if k in v}
                    for v in items.values() if v.get("state") == "succeeded"},
    }
    budget().release(job_id)
    names = sorted(v["image"] for v in failed.values())
    Fanout(get_redis(), ledger).finish(job_id, result, failed and {
        "type": "SomeItemsFailed", "message": f"{len(failed)} of {len(items)} images failed: {', '.join(names[:10])}",
        "items": {v["image"]: v["error"] for v in failed.values()}})
