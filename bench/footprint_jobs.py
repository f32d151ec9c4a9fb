"""The jobs bench/redis_footprint.py measures: each vendor's main job at two sizes, its inputs put in
the stack's S3, the stand-ins quick; and when the fleet has let go of a job that ended."""
from __future__ import annotations

from dataclasses import dataclass

import redis

from devstack.local_stack import LocalStack
from devstack.samples import immersal_site, scene, survey_photos
from devstack.waiting import wait_until
from geoqueue.s3ref import S3Ref
from runtime.ending import HOLDERS_KEY
from sandbox.mapillary_world import build_world

BUCKET = "geoqueue"
VENDORS = ("immersity", "immersal", "dronemapper", "mapillary")
DEFAULT_SIZES = {"immersity": (10, 40), "immersal": (16, 64), "dronemapper": (5, 20)}
# Two boxes of the stand-in's world (seed 42): one sequence of sandbox-fleet; two of sandbox-city.
HARVESTS = (("sandbox-fleet", (33.364141, 35.164116, 33.36447, 35.164385)),
            ("sandbox-city", (33.352346, 35.176439, 33.352676, 35.176709)))
# The vendors' speed: quick, so that a job's time is mostly the fleet's.
QUICK = {
    "immersity": {"processing_delay_s": 0.1},
    "immersal": {"construct_seconds": 1.0},
    "dronemapper": {"upload_to_node_s": 0.1, "queued_s": 0.3, "running_s": 2.0, "action_delay_s": 0.1,
                    "console_lines": 30, "orthophoto_px": 256, "dsm_px": 64, "pointcloud_points": 2000},
}
ACTIVE_SETS = ("gq:fanouts", "gq:immersal:active", "gq:dronemapper:active", HOLDERS_KEY)


@dataclass(frozen=True)
class FootprintJob:
    vendor: str
    name: str
    items: int
    params: dict

    @property
    def label(self) -> str:
        return f"{self.name} of {self.items} items"

    def warm_up_params(self) -> dict:
        """The same job once more, writing elsewhere (a harvest skips images at its destination)."""
        params = dict(self.params)
        if "destination" in params:
            params["destination"] = params["destination"].rstrip("/") + "-warm-up/"
        return params


def prepare_jobs(stack: LocalStack, vendors: list[str], sizes: tuple[int, int] | None) -> list[FootprintJob]:
    """Each vendor's job at two sizes, smaller first, inputs in S3."""
    for vendor, options in QUICK.items():
        stack.sandbox("POST", f"/_sandbox/config/{vendor}", json=options)
    store, jobs = stack.object_store(), []

    def put(key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        store.write(S3Ref(BUCKET, key), data, content_type)

    for vendor in vendors:
        if vendor == "mapillary":
            jobs += [harvest(n, slug, bbox) for n, (slug, bbox) in enumerate(HARVESTS)]
            continue
        for count in sizes or DEFAULT_SIZES[vendor]:
            prefix = f"footprint/{vendor}-{count}/"
            if vendor == "immersity":
                for i in range(count):
                    put(f"{prefix}img-{i:04d}.jpg", scene(i, 160, 120))
                params = {"prefix": f"s3://{BUCKET}/{prefix}"}
                jobs.append(FootprintJob(vendor, "immersity.batch", count, params))
            elif vendor == "immersal":
                photos, manifest, _ = immersal_site(count, (60.1699, 24.9384, 25.0), 64, 48, run=count)
                for name, data in photos:
                    put(prefix + name, data)
                put(prefix + "manifest.csv", manifest.encode(), "text/csv")
                params = {"images": f"s3://{BUCKET}/{prefix}", "name": f"Footprint{count}"}
                jobs.append(FootprintJob(vendor, "immersal.build_map", count, params))
            else:
                for name, data in survey_photos(count):
                    put(prefix + name, data)
                params = {"images": f"s3://{BUCKET}/{prefix}", "project_name": f"footprint {count}"}
                jobs.append(FootprintJob(vendor, "dronemapper.process_survey", count, params))
    return jobs


def harvest(n: int, slug: str, bbox: tuple) -> FootprintJob:
    world = build_world()
    organization = world.organization_by_slug(slug)
    sequences = {image.sequence_id for image in world.images_in_bbox(bbox, organization.id)}
    images = sum(len(world.sequences[s].image_ids) for s in sequences)
    return FootprintJob("mapillary", "mapillary.harvest", images, {
        "organization_id": organization.id, "bbox": list(bbox), "destination": f"s3://{BUCKET}/footprint/harvest-{n}/"})


def settled(stack: LocalStack, job_id: str) -> None:
    """Until the fleet let go of the job (its holds, fan-out and pollers' care), and a moment more."""
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    wait_until(lambda: not any(client.sismember(key, job_id) for key in ACTIVE_SETS), 120,
               f"the fleet letting go of job {job_id}", interval=0.2)
