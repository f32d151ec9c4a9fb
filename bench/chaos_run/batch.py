"""The chaos run's batch: how many jobs of each vendor's kinds (the full batch, and the small one CI
runs), their inputs put in S3, and what each job's outputs are checked against."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from devstack.samples import drive_photos, immersal_site, scene, survey_photos
from sandbox.mapillary_world import build_world

BUCKET = "geoqueue"
VENDORS = ("immersity", "immersal", "dronemapper", "mapillary")
ANIMATION = {"animationType": "gif", "animationLength": 2}
DRIVE_START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Batch:
    name: str
    immersity: tuple[int, int]        # jobs, images each (the first job animates its images too)
    immersal: tuple[int, int, int]    # jobs, images each, images per chunk (chunks go 3 at a time)
    dronemapper: tuple[int, int]      # jobs, images each
    harvest: tuple[str, tuple]        # organization (slug) and bbox in the stand-in's world
    upload: int                       # images of one mapillary.upload_sequence
    kills: int
    token_expiries: int               # times each vendor's tokens stop working
    deadline_s: float                 # what is not finished by then is unfinished (or lost)


# Bboxes chosen in the stand-in's world (seed 42): two sequences of sandbox-city (48 + 68 images),
# one of sandbox-fleet (25); nothing else of the organization within 5 m of them.
FULL = Batch("full", (3, 10), (2, 24, 4), (3, 10), ("sandbox-city", (33.352346, 35.176439, 33.352676, 35.176709)),
             upload=20, kills=10, token_expiries=3, deadline_s=900)
# The small batch submits its map in one chunk. Chunks capturing at once can leave several captures cut
# off by one kill, and when some of those the vendor refused (the 5xx their worker never read), only
# Immersal's workspace count can tell which arrived: settle may then send an arrived image again (a
# duplicate the full run shows at times; README, "Chaos run"). CI checks the rest without that chance.
SMALL = Batch("small", (1, 4), (1, 8, 8), (1, 4), ("sandbox-fleet", (33.364141, 35.164116, 33.36447, 35.164385)),
              upload=6, kills=3, token_expiries=1, deadline_s=300)


class BatchPlan:
    """Run's batch (a mixin: it puts inputs through the run's store and plans the run's jobs)."""

    def prepare_batch(self) -> None:
        """Every job's inputs in S3, and what its outputs are checked against."""
        b = self.batch
        for n in range(b.dronemapper[0]):
            prefix = f"chaos/survey-{n}/"
            photos = survey_photos(b.dronemapper[1])
            for name, data in photos:
                self.put(prefix + name, data)
            digests = {name: hashlib.sha256(data).hexdigest() for name, data in photos}
            self.plan(f"dronemapper.process_survey {n}", "dronemapper.process_survey", {
                "images": f"s3://{BUCKET}/{prefix}", "project_name": f"chaos {n}", "max_parallel_uploads": 3},
                lambda run, job, digests=digests: run.check_survey(job, digests))
        for n in range(b.immersal[0]):
            prefix = f"chaos/site-{n}/"
            # A tracker session (run) per site: the stand-in counts captures by (bank, run, index).
            photos, manifest, _ = immersal_site(b.immersal[1], (60.1699, 24.9384, 25.0), 64, 48, run=n, seed=100 * n)
            for name, data in photos:
                self.put(prefix + name, data)
            self.put(prefix + "manifest.csv", manifest.encode(), "text/csv")
            expected = {(n, index, hashlib.sha256(data).hexdigest()) for index, (_, data) in enumerate(photos)}
            self.plan(f"immersal.build_map {n}", "immersal.build_map", {
                "images": f"s3://{BUCKET}/{prefix}", "name": f"ChaosSite{n}", "chunk_size": b.immersal[2],
                "max_parallel": 3},
                lambda run, job, expected=expected: run.check_map(job, expected))
        for n in range(b.immersity[0]):
            prefix = f"chaos/photos-{n}/"
            for i in range(b.immersity[1]):
                self.put(f"{prefix}img-{i:03d}.jpg", scene(1000 * n + i, 160, 120))
            params = {"prefix": f"s3://{BUCKET}/{prefix}", "max_parallel": 4}
            if n == 0:
                params["animation"] = ANIMATION
            self.plan(f"immersity.batch {n}", "immersity.batch", params,
                        lambda run, job, animated=n == 0: run.check_disparities(job, animated))
        slug, bbox = b.harvest
        world = build_world()
        organization = world.organization_by_slug(slug)
        sequences = {image.sequence_id for image in world.images_in_bbox(bbox, organization.id)}
        image_ids = {i for s in sequences for i in world.sequences[s].image_ids}
        destination = f"s3://{BUCKET}/chaos/harvest/"
        self.plan(f"mapillary.harvest ({len(image_ids)} images, {len(sequences)} sequences)", "mapillary.harvest",
                    {"organization_id": organization.id, "bbox": list(bbox), "destination": destination},
                    lambda run, job: run.check_harvest(job, destination, image_ids))
        photos = drive_photos(b.upload, DRIVE_START)
        for name, data in photos:
            self.put("chaos/drive/" + name, data)
        md5s = {hashlib.md5(data).hexdigest() for _, data in photos}
        self.plan("mapillary.upload_sequence", "mapillary.upload_sequence",
                    {"images": f"s3://{BUCKET}/chaos/drive/", "max_parallel": 3},
                    lambda run, job: run.check_upload(job, md5s))
