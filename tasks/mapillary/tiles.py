"""Harvest: the owner's sequences, from coverage tiles drilled down only where the owner has imagery."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from config.settings import get_settings
from runtime import BudgetExceeded, JobContext
from services.rate_limit import FleetLimitReached
from tasks.mapillary.account import client
from tasks.mapillary.calls import Calls
from tasks.mapillary.inputs import HarvestPlan
from tasks.mapillary.records import HarvestCheckpoints
from vendors.mapillary.client import MapillaryClient
from vendors.mapillary.tiles import (
    IMAGE_ZOOM,
    SEQUENCE_MIN_ZOOM,
    CoverageTile,
    bbox_intersects,
    child_tiles,
    in_bbox,
    lonlat_to_tile,
    tile_bounds,
    tiles_covering_bbox,
)

START_TILES = 4                        # drilling starts at the deepest zoom where this many tiles cover the bbox


# --- harvest: tiles ---
def start_zoom(bbox: tuple[float, float, float, float]) -> int:
    """The deepest zoom at which a few tiles cover the bbox: drilling from there prunes empty areas
    without fetching coarse tiles that prune nothing. Never above z6, where the sequence layer
    (the first with organization ids) begins."""
    west, south, east, north = bbox
    for z in range(IMAGE_ZOOM, SEQUENCE_MIN_ZOOM, -1):
        x0, y0 = lonlat_to_tile(west, north, z)
        x1, y1 = lonlat_to_tile(east, south, z)
        if (x1 - x0 + 1) * (y1 - y0 + 1) <= START_TILES:
            return z
    return SEQUENCE_MIN_ZOOM


def explore_tile(coverage: CoverageTile, plan: HarvestPlan) -> dict:
    """Where to go from a tile: its children that meet the bbox while above z14, or at z14 the
    owner's sequences with an image in the bbox (the toolset's seq_dataset), and with captured_since
    only those with such an image captured since. Only z14's image points carry their own capture
    time: a sequence line's is one image's (docs/vendors/mapillary.md#coverage-tiles), so the
    window cannot prune higher up, and the tile service cannot be asked for it."""
    if not any(plan.owns(f) for f in (*coverage.sequences, *coverage.images)):
        return {"children": [], "sequences": []}
    if coverage.z < IMAGE_ZOOM:
        children = [c for c in child_tiles(coverage.z, coverage.x, coverage.y)
                    if bbox_intersects(tile_bounds(*c), plan.bbox)]
        return {"children": children, "sequences": []}
    sequences = {i.sequence_id for i in coverage.images
                 if plan.owns(i) and in_bbox(i.lon, i.lat, plan.bbox) and plan.in_window(i.captured_at)}
    return {"children": [], "sequences": sorted(sequences)}


def fetch_tile(vendor: MapillaryClient, tile: tuple[int, int, int]) -> CoverageTile:
    try:
        return vendor.coverage_tile(*tile)
    except FleetLimitReached as exc:
        if (exc.retry_after or 0) > get_settings().retry_backoff_max:
            renews = datetime.now(UTC) + timedelta(seconds=exc.retry_after)
            raise BudgetExceeded(f"the daily budget of {get_settings().mapillary_tiles_per_day} coverage tiles for "
                                 f"this token is spent; it renews at {renews:%Y-%m-%d %H:%M} UTC") from exc
        raise


def explore_and_save(plan: HarvestPlan, checkpoints: HarvestCheckpoints, tile: tuple[int, int, int]) -> dict:
    outcome = explore_tile(fetch_tile(client(), tile), plan)
    checkpoints.save_tile(tile, outcome)
    return outcome


def discover_sequences(job: JobContext, plan: HarvestPlan, checkpoints: HarvestCheckpoints) -> list[str]:
    """The owner's sequences, drilling the tiles that name the owner: every tile known to be needed
    is fetched at once, up to GEOQUEUE_MAPILLARY_CALLS_PER_SEQUENCE calls in flight, so the drill
    costs one round trip per zoom level rather than one per tile. Each tile is checkpointed."""
    calls = Calls(get_settings().mapillary_calls_per_sequence)
    sequences: set[str] = set()
    counted = {"visited": 0, "found": 0}

    def explored(outcome: dict) -> None:
        counted["visited"] += 1
        sequences.update(outcome["sequences"])
        job.progress(f"tiles {counted['visited']} of {counted['found']} so far, sequences found {len(sequences)}")
        for child in outcome["children"]:
            visit(tuple(child))

    def visit(tile: tuple[int, int, int]) -> None:
        counted["found"] += 1
        outcome = checkpoints.tile(tile)
        if outcome is not None:
            explored(outcome)
            return
        job.check_canceled()
        calls.add(explore_and_save, plan, checkpoints, tile, then=explored)

    for tile in tiles_covering_bbox(plan.bbox, start_zoom(plan.bbox)):
        visit(tuple(tile))
    calls.run()
    return sorted(sequences)
