"""The main job, end to end on the embedded stack: `geoqueue demo`; and `geoqueue stack`."""
from __future__ import annotations

import signal
import sys
import time
from datetime import UTC, datetime, timedelta

from devstack.http_demo import submit_over_http
from devstack.local_stack import LocalStack
from devstack.samples import geotagged, immersal_site, scene
from geoqueue.client import GeoQueue
from geoqueue.s3ref import S3Ref, parse_ref

BUCKET = "geoqueue"
SAMPLE_COUNT = 6


def say(text: str) -> None:
    print(text, flush=True)


def run_stack() -> int:
    """Run everything locally until Ctrl-C, printing how to reach it."""
    stack = LocalStack()
    say("starting the local stack ...")
    stack.start()
    say(f"""
  Redis        {stack.redis_url}
  Flower       {stack.flower_url}  (user {stack.flower_user}, password {stack.flower_password})
  HTTP API     {stack.api_url}/v1/jobs  (API key {stack.api_key}; OpenAPI at {stack.api_url}/docs)
  job pages    {stack.api_url}/ui/jobs  (sign in with the API key)
  S3 (moto)    {stack.s3_url}      bucket {BUCKET}
  sandbox      {stack.sandbox_url}
  logs         {stack.run_dir}

  export GEOQUEUE_REDIS_URL={stack.redis_url}
  geoqueue submit immersity.disparity -p image=s3://{BUCKET}/path/to/photo.jpg --watch
  curl -H 'Authorization: Bearer {stack.api_key}' {stack.api_url}/v1/jobs

Ctrl-C stops it.""")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    try:
        while not stopping:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    say("stopping ...")
    stack.stop()
    return 0


def upload_samples(stack: LocalStack, prefix: str) -> list[S3Ref]:
    store = stack.object_store()
    refs = []
    for seed in range(SAMPLE_COUNT):
        ref = S3Ref(BUCKET, f"{prefix}photo-{seed:02d}.jpg")
        store.write(ref, scene(seed, 480, 320), "image/jpeg")
        refs.append(ref)
    return refs


def show_progress(queue: GeoQueue, job_ids: dict[str, str]) -> None:
    from tqdm import tqdm

    bars = {label: tqdm(total=1, desc=label, unit="img", position=i, dynamic_ncols=True)
            for i, label in enumerate(job_ids)}
    pending = dict(job_ids)
    while pending:
        for label, job_id in list(pending.items()):
            job = queue.status(job_id)
            bar = bars[label]
            bar.total, bar.n = max(job.total, 1), job.done
            bar.set_postfix_str(f"{job.state}/{job.phase}")
            bar.refresh()
            if job.finished:
                del pending[label]
        time.sleep(0.3)
    for bar in bars.values():
        bar.close()


def s3_uris(value, path: str = "") -> list[tuple[str, str]]:
    """Every s3:// URI in a job result, with where it sits in the result."""
    if isinstance(value, str):
        return [(path, value)] if value.startswith("s3://") else []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    return [found for key, item in items for found in s3_uris(item, f"{path}.{key}" if path else str(key))]


def print_results(stack: LocalStack, queue: GeoQueue, job_ids: dict[str, str]) -> bool:
    store = stack.object_store()
    ok = True
    for label, job_id in job_ids.items():
        job = queue.status(job_id)
        credits = f", {job.credits} credits" if job.credits else ""
        say(f"\n{label}: {job.state} (job {job.id}{credits})")
        if job.state != "succeeded":
            ok = False
            say(f"  error: {job.error}")
            continue
        counts = {k: v for k, v in job.result.items() if isinstance(v, int) and not isinstance(v, bool) and v}
        if counts:
            say("  " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
        for uri, reason in (job.result.get("rejected") or {}).items():
            say(f"  rejected {uri}: {reason}")
        for where, uri in s3_uris(job.result):
            if where.endswith(("image", "images", "prefix")):
                continue  # the inputs
            say(f"  {uri}\n    {store.presign_get(parse_ref(uri), for_vendor=False)}")
    return ok


def upload_survey(stack: LocalStack, prefix: str, count: int = 8) -> str:
    store = stack.object_store()
    for seed in range(count):
        store.write(S3Ref(BUCKET, f"{prefix}DJI_{seed:04d}.JPG"), scene(100 + seed, 640, 480), "image/jpeg")
    return f"s3://{BUCKET}/{prefix}"


def upload_site(stack: LocalStack, prefix: str) -> tuple[str, dict]:
    """An Immersal scan: photos, poses and GPS in a manifest, around Helsinki's Senate Square."""
    store = stack.object_store()
    photos, manifest, intrinsics = immersal_site(10, (60.1699, 24.9523, 25.0))
    for name, data in photos:
        store.write(S3Ref(BUCKET, prefix + name), data, "image/jpeg")
    store.write(S3Ref(BUCKET, prefix + "manifest.csv"), manifest.encode(), "text/csv")
    return f"s3://{BUCKET}/{prefix}", intrinsics


def visual_gps(queue: GeoQueue, site: str, intrinsics: dict, build_job: str) -> bool:
    """Where was the sixth photo taken? Localize it in the map just built, then on the WGS84 ellipsoid."""
    built = queue.status(build_job)
    if built.state != "succeeded":
        return False
    fix = queue.wait(queue.submit("immersal.visual_gps", {
        "image": f"{site}img-005.jpg", "intrinsics": intrinsics, "map_ids": [built.result["map_id"]]}), timeout=120)
    if not fix.result["localized"]:
        say(f"\nImmersal Visual GPS: {fix.result['message']}")
        return False
    say(f"\nImmersal Visual GPS: {site}img-005.jpg was taken at latitude {fix.result['latitude']:.6f}, "
        f"longitude {fix.result['longitude']:.6f}, {fix.result['altitude']:.1f} m (map {built.result['map_id']})")
    return True


def upload_drive(stack: LocalStack, prefix: str) -> str:
    """Two short drives twenty minutes apart (so two sequences), and one photo without EXIF."""
    store = stack.object_store()
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    for i in range(12):
        drive, step = divmod(i, 6)
        taken = start + timedelta(minutes=20 * drive, seconds=2 * step)
        data = geotagged(700 + i, 35.1700 + 0.00004 * step, 33.3650 + 0.002 * drive, taken, heading=0.0)
        store.write(S3Ref(BUCKET, f"{prefix}drive-{i:02d}.jpg"), data, "image/jpeg")
    store.write(S3Ref(BUCKET, f"{prefix}no-exif.jpg"), scene(799, 160, 120), "image/jpeg")
    return f"s3://{BUCKET}/{prefix}"


def harvest_params(stack: LocalStack) -> dict:
    """A corner of the stand-in's world and its smallest organization (the stand-in says which)."""
    world = stack.sandbox("GET", "/_sandbox/status/mapillary")["world"]
    organization = min(world["organizations"], key=lambda org: world["organizations"][org]["images"])
    west, south, east, north = world["bbox"]
    corner = [west, south, west + (east - west) / 3, south + (north - south) / 3]
    return {"organization_id": organization, "bbox": corner, "destination": f"s3://{BUCKET}/demo/harvest/"}


def run_demo() -> int:
    say("starting the embedded stack (Redis, moto S3, sandbox vendors, workers, beat, Flower, HTTP API) ...")
    with LocalStack() as stack:
        say(f"  Flower: {stack.flower_url}  (user {stack.flower_user}, password {stack.flower_password})")
        queue = GeoQueue(stack.redis_url)
        refs = upload_samples(stack, "demo/photos/")
        say(f"uploaded {len(refs)} sample photos to s3://{BUCKET}/demo/photos/")
        survey = upload_survey(stack, "demo/survey/")
        say(f"uploaded a small drone survey to {survey}")
        site, intrinsics = upload_site(stack, "demo/scan/")
        say(f"uploaded an AR scan with its manifest to {site}")
        drive = upload_drive(stack, "demo/drive/")
        say(f"uploaded street photos with GPS EXIF to {drive}")
        job_ids = {
            "Immersity disparity batch": queue.submit("immersity.batch", {"prefix": f"s3://{BUCKET}/demo/photos/"}),
            "Immersity disparity + animation": queue.submit("immersity.disparity", {
                "image": refs[0].uri, "animation": {"animationType": "mp4", "animationLength": 4}}),
            "DroneMapper survey": queue.submit("dronemapper.process_survey", {
                "images": survey, "project_name": "geoqueue demo"}),
            "Immersal map": queue.submit("immersal.build_map", {"images": site, "name": "SenateSquare"}),
            "Mapillary harvest": queue.submit("mapillary.harvest", harvest_params(stack)),
            "Mapillary upload": queue.submit("mapillary.upload_sequence", {"images": drive}),
        }
        show_progress(queue, job_ids)
        ok = print_results(stack, queue, job_ids)
        ok = visual_gps(queue, site, intrinsics, job_ids["Immersal map"]) and ok
        ok = submit_over_http(stack, refs[1].uri, say) and ok
        say(f"\nThe job pages were at {stack.api_url}/ui/jobs")
        say(f"\nFlower was at {stack.flower_url}; logs in {stack.run_dir}")
        say("stopping the stack ...")
    say("done." if ok else "finished with failures.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_demo())
