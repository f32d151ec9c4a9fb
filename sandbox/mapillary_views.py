"""Views of the synthetic Mapillary world (sandbox/mapillary_world.py): its coverage vector tiles
and its images' pixels."""
from __future__ import annotations

import numpy as np

from sandbox.mapillary_world import Image, World

TILE_EXTENT = 4096
TILE_BUFFER = 64          # tile-local units lines may run past the tile edge, as renderers expect
OVERVIEW_ZOOMS = range(6)
SEQUENCE_ZOOMS = range(6, 15)
IMAGE_ZOOM = 14


def _tile_local(world: World, z: int, x: int, y: int, computed: bool) -> tuple[np.ndarray, np.ndarray]:
    mx, my = world.computed_merc if computed else world.merc
    scale = 2 ** z
    return (mx * scale - x) * TILE_EXTENT, (my * scale - y) * TILE_EXTENT


def _inside(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    return (px >= 0) & (px < TILE_EXTENT) & (py >= 0) & (py < TILE_EXTENT)


def _optional_ids(**values) -> dict:
    """Tile properties carry ids as integers; an absent organization is left out, not null."""
    return {key: int(value) for key, value in values.items() if value is not None}


def coverage_tile(world: World, z: int, x: int, y: int, *, computed: bool = False) -> bytes:
    """The mly1_public (or, computed=True, mly1_computed_public) tile z/x/y as MVT bytes.

    Layers by zoom: overview (z0-5, a point per sequence), sequence (z6-14, lines),
    image (z14, points). Geometry is tile-local with y pointing down, extent 4096.
    """
    import mapbox_vector_tile
    import shapely

    px, py = _tile_local(world, z, x, y, computed)
    layers = []
    if z in OVERVIEW_ZOOMS:
        features = []
        for sequence in world.sequences.values():
            first = world.images[sequence.image_ids[0]]
            k = world.position[first.id]
            if _inside(px[k:k + 1], py[k:k + 1])[0]:
                features.append({
                    "geometry": shapely.Point(px[k], py[k]), "id": int(first.id),
                    "properties": {"captured_at": first.captured_at, "id": int(first.id),
                                   "sequence_id": sequence.id, "is_pano": first.is_pano},
                })
        layers.append({"name": "overview", "features": features})
    if z in SEQUENCE_ZOOMS:
        low, high = -TILE_BUFFER, TILE_EXTENT + TILE_BUFFER
        features = []
        for sequence in world.sequences.values():
            ks = world.sequence_positions[sequence.id]
            xs, ys = px[ks], py[ks]
            if xs.max() < low or xs.min() > high or ys.max() < low or ys.min() > high:
                continue
            line = shapely.clip_by_rect(shapely.LineString(np.column_stack([xs, ys])), low, low, high, high)
            if line.is_empty:
                continue
            first = world.images[sequence.image_ids[0]]
            features.append({"geometry": line, "properties": {
                "captured_at": first.captured_at, "id": sequence.id, "image_id": int(first.id),
                "is_pano": sequence.camera.is_pano,
                **_optional_ids(organization_id=sequence.organization_id, creator_id=sequence.creator.id),
            }})
        layers.append({"name": "sequence", "features": features})
    if z == IMAGE_ZOOM:
        features = []
        for k in np.flatnonzero(_inside(px, py)):
            image = world.images[world.image_order[k]]
            features.append({"geometry": shapely.Point(px[k], py[k]), "id": int(image.id), "properties": {
                "captured_at": image.captured_at, "compass_angle": image.compass_angle, "id": int(image.id),
                "sequence_id": image.sequence_id, "is_pano": image.is_pano,
                **_optional_ids(organization_id=image.organization_id, creator_id=image.creator.id),
            }})
        layers.append({"name": "image", "features": features})
    layers = [layer for layer in layers if layer["features"]]
    if not layers:
        return b""
    return mapbox_vector_tile.encode(layers, default_options={"extents": TILE_EXTENT, "y_coord_down": True})


def render_jpeg(image: Image, width: int, height: int, quality: int = 85) -> bytes:
    """A deterministic street-ish picture of an image: sky, facades tinted by the image id, road.

    Drawn small and scaled up, so even a full-size original is quick to make."""
    import io

    from PIL import Image as PILImage

    rng = np.random.default_rng(int(image.id) % (2 ** 32))
    small_w, small_h = 64, max(8, round(64 * height / width))
    rows = np.linspace(0.0, 1.0, small_h)[:, None, None]
    sky = np.array([120, 170, 230]) * (1 - rows) + np.array([210, 225, 240]) * rows
    pixels = np.broadcast_to(sky, (small_h, small_w, 3)).copy()
    horizon = small_h // 2
    tint = rng.integers(60, 200, size=3)
    for left in range(0, small_w, 8):
        top = horizon - int(rng.integers(2, max(3, horizon)))
        pixels[top:horizon, left:left + 7] = tint + rng.integers(-30, 30, size=3)
    pixels[horizon:] = np.array([95, 95, 100])
    pixels[horizon + (small_h - horizon) // 2, small_w // 2 - 1:small_w // 2 + 1] = 240  # lane mark
    picture = PILImage.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).resize((width, height), PILImage.BILINEAR)
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=quality)
    return out.getvalue()
