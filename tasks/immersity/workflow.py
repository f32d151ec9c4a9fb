"""The work of an Immersity job: prices and credits, and each vendor call made at most once."""
from __future__ import annotations

import json
from typing import Any

from geoqueue.s3ref import S3Ref
from vendors.errors import TransientError, VendorError
from vendors.immersity import ANIMATION_OPTIONS, DISPARITY_OPTIONS, ImmersityClient, check_options
from workers.budget import CreditBudget
from workers.effects import charge_once, once_into_object
from workers.jobtask import BudgetExceeded, InvalidInput
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
