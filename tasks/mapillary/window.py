"""Harvest: what a run took of the capture times, and the watermark it hands the next run.

A schedule passes the next run `captured_since` = this watermark minus a lookback: imagery is often
uploaded days after its capture, so the window reaches back, and the images it meets again are
skipped by id at the destination."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tasks.mapillary.inputs import HarvestPlan


def capture_time_text(epoch_ms: int) -> str:
    """Epoch milliseconds as the ISO 8601 text `captured_since` takes."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def window_summary(plan: HarvestPlan, batches: dict[Any, dict], started_at: float) -> dict[str, Any]:
    """How many images of the harvested sequences were captured before the window (left out), and
    the watermark: the newest capture time among the images the run took, downloaded or already at
    the destination, never past the run's start (a camera whose clock runs ahead must not push the
    next window beyond imagery not seen yet). None when the run took no image: the last one stands."""
    captured = [meta.get("captured_at") for batch in batches.values() for _, meta in batch["rows"]]
    taken = [c for c in captured if isinstance(c, int) and plan.in_window(c)]
    newest = min(max(taken), round(started_at * 1000)) if taken else None
    return {"images_captured_earlier": sum(not plan.in_window(c) for c in captured),
            "watermark": None if newest is None else capture_time_text(newest)}
