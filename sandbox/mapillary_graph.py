"""Mapillary stand-in: Graph API entities (images, organizations, users) by id, in batches, and
the image ids of a sequence."""
from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from sandbox import mapillary_world as mw
from sandbox.mapillary_api import MISSING_ALIASES_CODE, NONEXISTENT_CODE, NONEXISTENT_SUBCODE, graph_error

THUMBNAIL_WIDTHS = {"thumb_256_url": 256, "thumb_1024_url": 1024, "thumb_2048_url": 2048, "thumb_original_url": None}
IMAGE_FIELDS = frozenset({
    "id", "altitude", "atomic_scale", "camera_parameters", "camera_type", "captured_at", "compass_angle",
    "computed_altitude", "computed_compass_angle", "computed_geometry", "computed_rotation", "creator",
    "detections", "exif_orientation", "geometry", "height", "is_pano", "make", "merge_cc", "mesh", "model",
    "quality_score", "sequence", "sfm_cluster", "width", *THUMBNAIL_WIDTHS,
})
ORGANIZATION_FIELDS = frozenset({"id", "slug", "name", "description"})
USER_FIELDS = frozenset({"id", "username"})


class GraphRoutes:
    """GET /{id}, GET /?ids=, GET /image_ids, and the fields each entity serves."""

    def _requested_fields(self, allowed: frozenset[str], node_type: str) -> list[str] | Response:
        """Only `id` unless fields are listed; `a.b` picks sub-fields of a (as in detections.value)."""
        names = [f.strip() for f in request.args.get("fields", "").split(",") if f.strip()]
        for name in names:
            if name.split(".", 1)[0] not in allowed:
                return graph_error(400, f"(#100) Tried accessing nonexisting field ({name}) "
                                        f"on node type ({node_type})", 100)
        return names

    def _node(self, node_id: str) -> tuple[str, Any] | None:
        world = self.world
        if node_id in world.images:
            if node_id in self.options["deleted_image_ids"]:
                return None
            return "Image", world.images[node_id]
        if node_id in world.organizations:
            return "Organization", world.organizations[node_id]
        if node_id in world.creators:
            return "User", world.creators[node_id]
        return None

    def _serialize(self, node_type: str, node: Any, names: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": node.id}
        for name in names:
            root, _, sub = name.partition(".")
            value = self._image_value(node, root) if node_type == "Image" else getattr(node, root, None)
            if value is None:
                continue  # fields an entity lacks are left out, as the API does
            if sub and isinstance(value, dict):
                picked = out.get(root) if isinstance(out.get(root), dict) else {}
                if sub in value:
                    picked[sub] = value[sub]
                value = picked
            out[root] = value
        return out

    def _image_value(self, image: mw.Image, name: str) -> Any:
        camera = image.camera
        if name in THUMBNAIL_WIDTHS:
            return self._cdn_url(image, name[len("thumb_"):-len("_url")])
        simple = {
            "id": image.id, "altitude": image.altitude, "atomic_scale": image.atomic_scale,
            "camera_parameters": list(camera.parameters), "camera_type": camera.camera_type,
            "captured_at": image.captured_at, "compass_angle": image.compass_angle,
            "computed_altitude": image.computed_altitude, "computed_compass_angle": image.computed_compass_angle,
            "computed_rotation": list(image.computed_rotation), "exif_orientation": 1,
            "height": camera.height, "width": camera.width, "is_pano": camera.is_pano, "make": camera.make,
            "model": camera.model, "merge_cc": image.merge_cc, "quality_score": image.quality_score,
            "sequence": image.sequence_id,
        }
        if name in simple:
            return simple[name]
        if name == "geometry":
            return {"type": "Point", "coordinates": [image.lon, image.lat]}
        if name == "computed_geometry":
            return {"type": "Point", "coordinates": [image.computed_lon, image.computed_lat]}
        if name == "creator":
            return {"id": image.creator.id, "username": image.creator.username}
        if name == "mesh":
            return {"id": image.mesh_id, "url": self._cdn_url(image, "mesh")}
        if name == "sfm_cluster":
            return {"id": image.sfm_cluster_id, "url": self._cdn_url(image, "sfm")}
        if name == "detections":
            return {"data": []}
        return None

    def _allowed_fields(self, node_type: str) -> frozenset[str]:
        return {"Image": IMAGE_FIELDS, "Organization": ORGANIZATION_FIELDS, "User": USER_FIELDS}[node_type]

    def _get_node(self, node_id: str) -> Response:
        refused = self._guard_read("graph")
        if refused:
            return refused
        found = self._node(node_id)
        if found is None:
            self.calls.add("graph_missing", node_id)
            return graph_error(400, f"Unsupported get request. Object with ID '{node_id}' does not exist, cannot be "
                                    "loaded due to missing permissions, or does not support this operation",
                               NONEXISTENT_CODE, subcode=NONEXISTENT_SUBCODE)
        node_type, node = found
        names = self._requested_fields(self._allowed_fields(node_type), node_type)
        if isinstance(names, Response):
            return names
        self.calls.add("graph_image" if node_type == "Image" else "graph_node", node_id)
        return jsonify(self._serialize(node_type, node, names))

    def _get_batch(self) -> Response:
        refused = self._guard_read("graph")
        if refused:
            return refused
        ids = [i.strip() for i in request.args.get("ids", "").split(",") if i.strip()]
        if not ids:
            return graph_error(400, "(#100) The parameter ids is required", 100)
        missing = [i for i in ids if self._node(i) is None]
        if missing:
            # One id that does not resolve fails the whole batch.
            self.calls.add("graph_batch_failed")
            return graph_error(404, f"(#803) Some of the aliases you requested do not exist: {','.join(missing)}",
                               MISSING_ALIASES_CODE)
        out = {}
        for node_id in ids:
            node_type, node = self._node(node_id)
            names = self._requested_fields(self._allowed_fields(node_type), node_type)
            if isinstance(names, Response):
                return names
            out[node_id] = self._serialize(node_type, node, names)
        self.calls.add("graph_batch")
        self.calls.add("graph_batch_ids", str(len(ids)))
        return jsonify(out)

    def _get_image_ids(self) -> Response:
        refused = self._guard_read("graph")
        if refused:
            return refused
        sequence_id = request.args.get("sequence_id", "")
        if not sequence_id:
            return graph_error(400, "(#100) The parameter sequence_id is required", 100)
        sequence = self.world.sequences.get(sequence_id)
        if sequence is None:
            return graph_error(400, f"Unsupported get request. Object with ID '{sequence_id}' does not exist, cannot "
                                    "be loaded due to missing permissions, or does not support this operation",
                               NONEXISTENT_CODE, subcode=NONEXISTENT_SUBCODE)
        self.calls.add("image_ids", sequence_id)
        return jsonify({"data": [{"id": image_id} for image_id in sequence.image_ids]})
