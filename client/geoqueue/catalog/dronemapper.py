"""DroneMapper jobs: a drone survey in S3 processed into orthophoto, DSM and point cloud back in S3.
Option names and value types are the server's own (/api/processingnodes/options/): a worker checks them."""
from __future__ import annotations

import json
from typing import Any

from geoqueue.params import (
    Choice,
    Digits,
    Flag,
    InvalidParams,
    JobSpec,
    ListOf,
    Number,
    OneOf,
    Param,
    Record,
    S3Prefix,
    Text,
    Type,
    Whole,
    shown,
)

MAX_PARALLEL_UPLOADS = 32
DEFAULT_ASSETS = ("orthophoto.tif", "dsm.tif", "pointcloud.ply")
# The doc's assets and WebODM's ASSETS_MAP names, with the doc's pointcloud.ply.
KNOWN_ASSETS = ("all.zip", "orthophoto.tif", "orthophoto.png", "orthophoto.mbtiles", "orthophoto.kmz", "dsm.tif",
                "dtm.tif", "pointcloud.ply", "georeferenced_model.las", "georeferenced_model.laz",
                "georeferenced_model.ply", "georeferenced_model.csv", "textured_model.zip", "textured_model.glb",
                "cameras.json", "shots.geojson", "report.pdf")
JOB_ID = Text(pattern="[A-Za-z0-9_-]{1,64}", max_length=64, describe="a job id")


class ServerOptions(Type):
    """{name: value} or [{"name": ..., "value": ...}] (the doc's form); values are text, numbers or true/false.
    The server's own list decides the names, so the object is free-form: bounded in options (ODM has
    about a hundred) and in size, which a long text value (a boundary's GeoJSON) may need."""

    MOST = 200
    MOST_BYTES = 64 * 1024
    NAME = Text(max_length=200, describe="an option name")
    VALUE = OneOf((Flag(), Number(), Text(max_length=10_000, describe="text")), "text, a number or true/false")
    ENTRY = Record({"name": NAME, "value": VALUE})
    LIMITS = f"at most {MOST} options, {MOST_BYTES // 1024} KiB as JSON"

    def check(self, value: Any, field: str) -> Any:
        if not isinstance(value, (dict, list)):
            raise InvalidParams(f'{field}: give options as {{name: value}} or [{{"name": ..., "value": ...}}], '
                                f"not {shown(value)}", field=field)
        if len(value) > self.MOST:
            raise InvalidParams(f"{field}: {self.LIMITS}; got {len(value)} options", field=field)
        if isinstance(value, dict):
            for name in value:
                self.NAME.check(str(name), field)
            checked = {str(name): self.VALUE.check(item, f"{field}.{name}") for name, item in value.items()}
        else:
            checked = [self.ENTRY.check(entry, f"{field}[{n}]") for n, entry in enumerate(value)]
        size = len(json.dumps(checked).encode())
        if size > self.MOST_BYTES:
            raise InvalidParams(f"{field}: {self.LIMITS}; got {size} bytes", field=field)
        return checked

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "object", "additionalProperties": self.VALUE.schema(),
                           "propertyNames": self.NAME.schema(), "maxProperties": self.MOST},
                          {"type": "array", "items": self.ENTRY.schema(), "maxItems": self.MOST}]}


def one_project(params: dict[str, Any]) -> None:
    if params.get("project") is not None and params.get("project_name") is not None:
        raise InvalidParams("project: give an existing project or a project_name to create, not both", field="project")


JOBS = (
    JobSpec("dronemapper.process_survey", "Process the survey under a prefix and deliver its assets to S3.", {
        "images": Param(S3Prefix(), "the survey's JPEGs (at least 2)", required=True),
        "project": Param(Digits(), "an existing project id"),
        "project_name": Param(Text(max_length=255, describe="a project name"), "a project to create (once)"),
        "name": Param(Text(max_length=255, describe="a task name"), "the vendor task's name"),
        "options": Param(ServerOptions(), f"processing options, checked against the server's "
                                          f"({ServerOptions.LIMITS})"),
        "assets": Param(ListOf(Choice(KNOWN_ASSETS), 1, len(KNOWN_ASSETS), unique=True),
                        "assets to deliver, default " + ", ".join(DEFAULT_ASSETS)),
        "output": Param(S3Prefix(output=True), "where the assets go"),
        "max_parallel_uploads": Param(Whole(1, MAX_PARALLEL_UPLOADS), "images uploading at once"),
    }, rule=one_project, rule_doc="Give `project` or `project_name`, not both."),
    JobSpec("dronemapper.cancel", "Cancel a survey and its vendor task.", {
        "job_id": Param(JOB_ID, "the survey's job id", required=True),
    }),
    JobSpec("dronemapper.restart", "Run a finished survey's vendor task again and deliver again.", {
        "job_id": Param(JOB_ID, "the survey's job id", required=True),
        "options": Param(ServerOptions(), f"new processing options ({ServerOptions.LIMITS})"),
    }),
    JobSpec("dronemapper.remove", "Remove a survey's vendor task and its vendor-side assets.", {
        "job_id": Param(JOB_ID, "the survey's job id", required=True),
    }),
)
