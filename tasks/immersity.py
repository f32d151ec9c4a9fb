"""Immersity AI jobs: a disparity map for one image, a batch over an S3 prefix, animations.

    immersity.disparity  {"image": "s3://b/k.jpg", "output"?: "s3://b/out.png", "options"?: {...}, "animation"?: {...}}
    immersity.batch      {"prefix": "s3://b/photos/", "output_prefix"?: "s3://b/out/", "options"?, "animation"?, "max_parallel"?}
    immersity.animation  {"image": "s3://b/k.jpg", "disparity": "s3://b/k.png", "output"?: "s3://b/k.mp4", "options"?: {...}}
"""
from __future__ import annotations

import json
from typing import Any

from geoqueue.s3ref import BadReference, S3Ref, parse_ref
from vendors.errors import TransientError, VendorError
from vendors.immersity import (
    ANIMATION_OPTIONS,
    DISPARITY_OPTIONS,
    ImmersityClient,
    check_options,
)
from workers import app
from workers.budget import CreditBudget
from workers.effects import charge_once, once_into_object
from workers.fanout import Fanout
from workers.inputs import object_ref
from workers.jobtask import (
    PENDING,
    BudgetExceeded,
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
from workers.token_cache import RedisTokenStore

IMAGE_MAGIC = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
PRICES_KEY = "gq:immersity:prices"


# --- the vendor, configured from settings ---
def client() -> ImmersityClient:
    s = get_settings()
    if not (s.immersity_client_id and s.immersity_client_secret):
        raise VendorError("Immersity credentials are not configured (GEOQUEUE_IMMERSITY_CLIENT_ID/_SECRET)",
                          vendor="immersity")
    secret = s.immersity_client_secret.get_secret_value()
    return ImmersityClient(s.immersity_api_url, s.immersity_token_url, s.immersity_client_id.get_secret_value(),
                           secret, RedisTokenStore(get_redis(), "immersity", secret), timeout=s.immersity_timeout)


def price(operation: str, variant: str) -> int:
    """Credits per call from /api/v1/prices (cached fleet-wide for 10 minutes)."""
    cached = get_redis().get(PRICES_KEY)
    if cached is None:
        try:
            prices = client().prices()
            get_redis().set(PRICES_KEY, json.dumps(prices), ex=600)
        except TransientError:
            prices = {}
    else:
        prices = json.loads(cached)
    value = prices.get(operation, {}).get(variant) if isinstance(prices.get(operation), dict) else None
    return int(value) if value is not None else get_settings().immersity_default_price


def budget() -> CreditBudget:
    return CreditBudget(get_redis(), "immersity", get_settings().immersity_credit_budget)


# --- inputs ---


def check_image(ref: S3Ref, field: str = "image") -> None:
    """Exists, is not empty, and starts like a JPEG or PNG."""
    size = get_store().size(ref)
    if size is None:
        raise InvalidInput(f"{field}: {ref} does not exist", field=field)
    if size == 0:
        raise InvalidInput(f"{field}: {ref} is empty", field=field)
    head = get_store().head_bytes(ref, 8)
    if not any(head.startswith(magic) for magic in IMAGE_MAGIC):
        raise InvalidInput(f"{field}: {ref} is not a JPEG or PNG image", field=field)


def plan(params: dict[str, Any]) -> dict[str, Any]:
    """Checks options before any call; returns the normalized ones."""
    options = params.get("options") or {}
    animation = params.get("animation")
    try:
        check_options(options, DISPARITY_OPTIONS, "disparity")
        if animation is not None:
            check_options(animation, ANIMATION_OPTIONS, "animation")
    except VendorError as exc:
        raise InvalidInput(exc.message, field=exc.field) from exc
    return {"options": options, "animation": animation}


def calls_per_image(animation: dict | None) -> list[tuple[str, str]]:
    calls = [("disparity", "mono")]
    if animation is not None:
        calls.append(("animation", animation.get("animationType", "mp4")))
    return calls


def reserve_credits(job_id: str, images: int, animation: dict | None) -> int:
    cost = images * sum(price(op, variant) for op, variant in calls_per_image(animation))
    granted, spent, reserved = budget().reserve(job_id, cost)
    if not granted:
        raise BudgetExceeded(
            f"the job needs {cost} credits but the budget of {budget().limit} has {budget().limit - spent - reserved} left",
            needed=cost, spent=spent)
    return cost


# --- the work for one image ---
def output_for(image: S3Ref, output_prefix: S3Ref, suffix: str) -> S3Ref:
    stem = image.name.rsplit(".", 1)[0]
    return output_prefix.child(f"{stem}{suffix}")


def process_image(job_id: str, image: S3Ref, disparity_out: S3Ref, options: dict,
                  animation: dict | None, animation_out: S3Ref | None) -> dict[str, Any]:
    """Disparity (and animation) for one image, each vendor call made at most once."""
    check_image(image)
    store, vendor, ledger = get_store(), client(), get_ledger()
    limit = get_settings().immersity_timeout
    outcome: dict[str, Any] = {"image": image.uri, "disparity": disparity_out.uri, "credits": 0}

    def disparity_call() -> None:
        vendor.disparity(store.presign_get(image), store.presign_put(disparity_out),
                         correlation_id=f"{job_id}:{image.key}", **options)

    steps = [("disparity", "mono", disparity_out, disparity_call)]
    if animation is not None:
        kind = animation.get("animationType", "mp4")

        def animation_call() -> None:
            vendor.animation(store.presign_get(image), store.presign_get(disparity_out),
                             store.presign_put(animation_out), correlation_id=f"{job_id}:{image.key}:anim",
                             **animation)

        steps.append(("animation", kind, animation_out, animation_call))
        outcome["animation"] = animation_out.uri

    for operation, variant, target, call in steps:
        effect = f"immersity:{target.uri}"
        who = once_into_object(get_redis(), store, effect, target, call, limit)
        if charge_once(get_redis(), job_id, effect, who):
            cost = price(operation, variant)
            ledger.add_credits(job_id, cost)
            budget().spend(job_id, cost)
            outcome["credits"] += cost
        size = store.size(target)
        if not size:
            raise VendorError(f"Immersity reported success but {target} is missing or empty", vendor="immersity")
        outcome[f"{operation}_bytes"] = size
    return outcome


def default_outputs(job_id: str) -> S3Ref:
    return S3Ref(get_settings().s3_bucket, f"immersity/{job_id}")


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
