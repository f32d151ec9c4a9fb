"""The work of an Immersity job: credits reserved up front, and each paid call made once.

Every call writes one object, so the object itself tells whether a call took effect: before a
call the object is looked for, and a marker tells a redelivered task that an earlier attempt may
still be in flight (it waits for that one rather than pay twice).
"""
from __future__ import annotations

from typing import Any

from config.redis_client import get_redis
from config.settings import Settings, get_settings
from geoqueue.s3ref import S3Ref
from runtime import BudgetExceeded, JobContext, Once, ending
from services.storage import get_store
from services.token_cache import RedisTokenStore
from services.vendor_clients import call_retries, vendor_client
from tasks.immersity.records import Credits
from vendors.errors import TransientError, VendorError
from vendors.immersity import ImmersityClient


@vendor_client("immersity", "immersity_client_id", "immersity_client_secret")
def client(s: Settings) -> ImmersityClient:
    secret = s.immersity_client_secret.get_secret_value()
    return ImmersityClient(s.immersity_api_url, s.immersity_token_url, s.immersity_client_id.get_secret_value(),
                           secret, RedisTokenStore(get_redis(), "immersity", secret), timeout=s.immersity_timeout,
                           retries=call_retries(s))


def price(operation: str, variant: str) -> int:
    """Credits per call from /api/v1/prices (cached fleet-wide), else the configured default."""
    try:
        prices = Credits().prices(lambda: client().prices())
    except TransientError:
        prices = {}
    value = prices.get(operation, {}).get(variant) if isinstance(prices.get(operation), dict) else None
    return int(value) if value is not None else get_settings().immersity_default_price


def calls_per_image(animation: dict | None) -> list[tuple[str, str]]:
    calls = [("disparity", "mono")]
    if animation is not None:
        calls.append(("animation", animation.get("animationType", "mp4")))
    return calls


def reserve_credits(job_id: str, images: int, calls: list[tuple[str, str]]) -> int:
    """Reserve what the job may spend; refused before any call when the budget cannot cover it."""
    cost = images * sum(price(operation, variant) for operation, variant in calls)
    budget = Credits().budget
    ending.hold(job_id)
    granted, spent, reserved = budget.reserve(job_id, cost)
    if not granted:
        raise BudgetExceeded(f"the job needs {cost} credits but the budget of {budget.limit} has "
                             f"{budget.limit - spent - reserved} left", needed=cost, spent=spent)
    return cost


def output_for(image: S3Ref, output_prefix: S3Ref, suffix: str) -> S3Ref:
    return output_prefix.child(image.name.rsplit(".", 1)[0] + suffix)


def paid_call(job: JobContext, operation: str, variant: str, target: S3Ref, call) -> dict[str, Any]:
    """One call that writes `target`, made once; its cost counted once in the job's credits."""
    store = get_store()

    # The marked call is the vendor's alone: an S3 error after it must not read as the vendor's answer.
    def make() -> dict[str, Any]:
        try:
            call()
        except VendorError as exc:
            if isinstance(exc, TransientError):
                raise
            raise type(exc)(f"{operation} into {target}: {exc.message}", vendor=exc.vendor, status=exc.status,
                            vendor_message=exc.vendor_message, field=exc.field) from exc
        return {"paid": True}

    def made_by_cut_off_call(_since: float) -> dict[str, Any] | None:
        return {"paid": True} if store.size(target) else None

    # The charge is counted by the attempt that records the call's result, once: the Once record is the
    # call's only record. (A worker killed between the two undercounts the job by this call, never twice.)
    effect = Once(job.id).run(f"immersity:{target.uri}", make, made_by_cut_off_call,
                              in_flight=get_settings().immersity_timeout)
    credits = Credits().charge(job.id, price(operation, variant)) if effect.first else 0
    size = store.size(target)
    if not size:
        # The vendor answered success: calling again would pay again for the same missing object.
        raise VendorError(f"Immersity reported success but {target} is missing or empty", vendor="immersity",
                          status=200)
    return {"bytes": size, "credits": credits}


def process_image(job: JobContext, image: S3Ref, disparity_out: S3Ref, options: dict,
                  animation: dict | None, animation_out: S3Ref | None, field: str = "image") -> dict[str, Any]:
    """Disparity (and animation) for one image (checked by the caller), each vendor call made at most once."""
    store, vendor = get_store(), client()
    outcome: dict[str, Any] = {"image": image.uri, "disparity": disparity_out.uri, "credits": 0}
    done = paid_call(job, "disparity", "mono", disparity_out, lambda: vendor.disparity(
        store.presign_get(image), store.presign_put(disparity_out), correlation_id=f"{job.id}:{image.key}", **options))
    outcome["credits"] += done["credits"]
    outcome["disparity_bytes"] = done["bytes"]
    if animation is not None:
        done = paid_call(job, "animation", animation.get("animationType", "mp4"), animation_out,
                         lambda: vendor.animation(store.presign_get(image), store.presign_get(disparity_out),
                                                  store.presign_put(animation_out),
                                                  correlation_id=f"{job.id}:{image.key}:anim", **animation))
        outcome.update(animation=animation_out.uri, animation_bytes=done["bytes"])
        outcome["credits"] += done["credits"]
    return outcome
