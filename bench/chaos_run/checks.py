"""Is a succeeded job of the chaos run right? Its outputs in S3 and at the vendor, against what the
batch put in; each check lists what is wrong (nothing: right)."""
from __future__ import annotations

import csv
import hashlib
import io
import lzma

from geoqueue.job_record import Job
from geoqueue.s3ref import parse_ref

CREDITS_PER_CALL = 10              # the Immersity stand-in's price of a disparity map and of an animation


class ResultChecks:
    """Run's checks of succeeded jobs (a mixin: they read the run's store, queue and stack)."""

    def missing_objects(self, uris: list[str]) -> list[str]:
        return [f"{uri} is not in S3" for uri in uris if not self.store.size(parse_ref(uri))]

    def check_disparities(self, job: Job, animated: bool) -> list[str]:
        outcomes = list(self.queue.items(job.id).values())
        problems = [] if job.result["succeeded"] == self.batch.immersity[1] == len(outcomes) else \
            [f"{job.result['succeeded']} of {self.batch.immersity[1]} images succeeded"]
        credits = len(outcomes) * CREDITS_PER_CALL * (2 if animated else 1)
        if job.credits != credits:
            problems.append(f"{job.credits} credits counted where {credits} were spent")
        uris = [o[kind] for o in outcomes for kind in ("disparity", "animation") if kind in o]
        if animated and sum("animation" in o for o in outcomes) != len(outcomes):
            problems.append("an image has no animation")
        return problems + self.missing_objects(uris)

    def check_map(self, job: Job, expected: set[tuple[int, int, str]]) -> list[str]:
        data = self.store.read(parse_ref(job.result["map"]))
        if hashlib.sha256(data).hexdigest() != job.result["sha256"]:
            return [f"{job.result['map']} does not match its sha256"]
        # The stand-in's map format: one line per image it was built from (run, index, sha256, pose).
        lines = lzma.decompress(data).decode().splitlines()[1:]
        built = {(int(run), int(index), digest) for run, index, digest, *_ in (line.split() for line in lines)}
        if built == expected:
            return []
        return [(f"the map holds {len(built & expected)} of the {len(expected)} images "
                 f"and {len(built - expected)} others")]

    def check_survey(self, job: Job, digests: dict[str, str]) -> list[str]:
        assets = job.result["assets"]
        stored = {name: self.store.size(parse_ref(a["uri"])) for name, a in assets.items()}
        problems = [f"{name}: {stored[name]} bytes in S3 where {a['bytes']} were delivered"
                    for name, a in assets.items() if stored[name] != a["bytes"] or not a["bytes"]]
        if len(assets) != 3:
            problems.append(f"assets delivered: {sorted(assets)}")
        task = self.stack.sandbox("GET", "/_sandbox/status/dronemapper")["tasks"][str(job.result["task"])]
        held = {name: image["sha256"] for name, image in task["images"].items()}
        if held == digests:
            return problems
        as_sent = sum(held.get(n) == d for n, d in digests.items())
        return [*problems, f"the vendor task holds {len(held)} images, {as_sent} as sent"]

    def check_harvest(self, job: Job, destination: str, image_ids: set[str]) -> list[str]:
        r = job.result
        problems = [] if r["images_downloaded"] + r["images_already_present"] == len(image_ids) and \
            r["images_missing"] == 0 else [f"downloaded {r['images_downloaded']} of {len(image_ids)} images"]
        folder = parse_ref(destination, prefix=True).child("downloaded_images/")
        stored = {ref.name for ref, size in self.store.list(folder) if size}
        if stored != {f"{i}_256.jpg" for i in image_ids}:
            problems.append(f"{len(stored)} images at the destination where {len(image_ids)} were expected")
        rows = list(csv.DictReader(io.StringIO(self.store.read(parse_ref(r["outputs"]["img_dataset.csv"])).decode())))
        if sorted(row["img_id"] for row in rows) != sorted(image_ids):
            problems.append(f"img_dataset.csv lists {len(rows)} images where {len(image_ids)} were expected")
        return problems + self.missing_objects([r["outputs"]["seq_dataset.csv"], r["outputs"]["img_meta_dataset.csv"]])

    def check_upload(self, job: Job, md5s: set[str]) -> list[str]:
        r = job.result
        status = self.stack.sandbox("GET", "/_sandbox/status/mapillary")
        sessions = {s["md5"] for key, s in status["upload_sessions"].items() if key.endswith(".jpg") and s["handle"]}
        clusters = {c["cluster_id"]: c for c in status["clusters"].values()}
        problems = [] if r["uploaded"] == len(md5s) else [f"{r['uploaded']} of {len(md5s)} images uploaded"]
        if not md5s <= sessions:
            problems.append(f"{len(md5s - sessions)} images have no completed upload session")
        closed = [s for s in r["sequences"] if s["state"] == "uploaded" and s.get("cluster_id") in clusters]
        if len(closed) != len(r["sequences"]) or sum(clusters[s["cluster_id"]]["images"] for s in closed) != len(md5s):
            shown = [(s["state"], s.get("cluster_id")) for s in r["sequences"]]
            problems.append(f"sequences closed at the vendor: {shown}")
        self.expected_sequences = len(r["sequences"])
        return problems
