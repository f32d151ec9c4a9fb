"""Mapillary's official Python SDK (PyPI `mapillary`) against the Mapillary stand-in, tried as a new
user would: set a client token, list the images in a bbox, fetch one image by its key.

The SDK writes https://graph.mapillary.com and https://tiles.mapillary.com into its URLs and has no
setting for them, so the `sdk` fixture routes those two hosts to the running sandbox in requests'
transport. The SDK builds and sends every request as it would to Mapillary (paths, trailing slashes,
query and headers untouched) and the stand-in answers them over real HTTP on loopback. A request
to any other host fails the test.
"""
from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

import mapillary
import pytest
import requests
from requests.adapters import HTTPAdapter

from sandbox.mapillary import SANDBOX_CLIENT_TOKEN
from sandbox.mapillary_world import build_world

# Where the sandbox serves each Mapillary host (sandbox/mapillary.py).
SANDBOX_PREFIXES = {"graph.mapillary.com": "/mapillary/graph", "tiles.mapillary.com": "/mapillary/tiles"}
# Tile-local coordinates (extent 4096 at z14) move a point by up to about half a metre: images that
# close to the bbox's edge may fall either side of it, for the SDK as for any tile reader.
TILE_QUANTUM_DEG = 1e-5


@pytest.fixture(scope="module")
def world():
    return build_world()


@pytest.fixture
def sdk(server, monkeypatch) -> list[tuple[str, str, int]]:
    """The SDK with the sandbox's client token set and Mapillary's hosts routed to the sandbox.
    Yields what it sent: (method, URL as the SDK wrote it, status)."""
    sandbox = urlsplit(server.url)
    sent: list[tuple[str, str, int]] = []
    send = HTTPAdapter.send

    def send_to_sandbox(adapter, request, *args, **kwargs):
        asked, url = request.url, urlsplit(request.url)
        if url.hostname in SANDBOX_PREFIXES:
            path = SANDBOX_PREFIXES[url.hostname] + url.path
            request.url = urlunsplit((sandbox.scheme, sandbox.netloc, path, url.query, ""))
        elif url.netloc != sandbox.netloc:
            raise AssertionError(f"the SDK asked a host that is neither Mapillary's nor the sandbox: {asked}")
        response = send(adapter, request, *args, **kwargs)
        sent.append((request.method, asked, response.status_code))
        return response

    monkeypatch.setattr(HTTPAdapter, "send", send_to_sandbox)
    mapillary.interface.set_access_token(SANDBOX_CLIENT_TOKEN)
    return sent


def images_in_bbox(bbox: dict, image_type: str) -> dict[str, dict]:
    collection = json.loads(mapillary.interface.images_in_bbox(dict(bbox), image_type=image_type))
    return {str(f["properties"]["id"]): f["properties"] for f in collection["features"]}


def test_images_in_bbox_lists_the_stand_ins_images(sdk, sandbox, world):
    lon, lat = world.center
    bbox = {"west": lon - 0.003, "south": lat - 0.002, "east": lon + 0.003, "north": lat + 0.002}
    # The SDK filters the tiles' images on the client by is_pano, and without image_type keeps the
    # flat ones only; asking for each kind gives them all.
    flat, pano = images_in_bbox(bbox, "flat"), images_in_bbox(bbox, "pano")

    inside = world.images_in_bbox((bbox["west"], bbox["south"], bbox["east"], bbox["north"]))
    assert len(inside) > 200 and any(i.is_pano for i in inside) and not all(i.is_pano for i in inside)
    for got, want in ((flat, {i.id for i in inside if not i.is_pano}), (pano, {i.id for i in inside if i.is_pano})):
        for image_id in set(got) ^ want:
            image = world.images[image_id]
            to_edge = min(abs(image.lon - bbox["west"]), abs(image.lon - bbox["east"]),
                          abs(image.lat - bbox["south"]), abs(image.lat - bbox["north"]))
            assert to_edge < TILE_QUANTUM_DEG, f"image {image_id} is {to_edge:.6f} deg inside the bbox's edge"
        assert len(set(got) & want) > 0.98 * len(want)
    for image_id, properties in {**flat, **pano}.items():
        image = world.images[image_id]
        assert (properties["sequence_id"], properties["captured_at"]) == (image.sequence_id, image.captured_at)

    tiles = [url for _, url, _ in sdk if url.startswith("https://tiles.mapillary.com/")]
    assert tiles and all(urlsplit(url).path.endswith("/") for url in tiles), tiles
    served = {k for k in sandbox.counters("mapillary") if k.startswith("tile:14/")}
    assert {"tile:" + "/".join(urlsplit(url).path.rstrip("/").split("/")[-3:]) for url in tiles} == served


def test_image_from_key_returns_the_stand_ins_image(sdk, sandbox, world):
    lon, lat = world.center
    image = min(world.images_in_bbox((lon - 0.002, lat - 0.002, lon + 0.002, lat + 0.002)),
                key=lambda i: abs(i.lon - lon) + abs(i.lat - lat))

    collection = json.loads(mapillary.interface.image_from_key(image.id))
    features = collection["features"]
    feature = features[0] if isinstance(features, list) else features   # 1.0.16 gives the one feature bare
    properties = feature["properties"]
    assert properties["id"] == image.id
    assert properties["sequence"] == image.sequence_id
    assert properties["captured_at"] == image.captured_at
    assert properties["creator"] == {"id": image.creator.id, "username": image.creator.username}
    assert (properties["width"], properties["height"]) == (image.camera.width, image.camera.height)
    assert properties["computed_geometry"]["coordinates"] == pytest.approx([image.computed_lon, image.computed_lat])

    thumbnail = requests.get(properties["thumb_256_url"], timeout=30)
    assert thumbnail.status_code == 200 and thumbnail.content.startswith(b"\xff\xd8")

    entity = [(status, url) for _, url, status in sdk if url.startswith(f"https://graph.mapillary.com/{image.id}/")]
    assert entity and all(status == 200 for status, _ in entity), entity
    assert sandbox.counters("mapillary")[f"graph_image:{image.id}"] == len(entity)
