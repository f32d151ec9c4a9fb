"""The main job, end to end on the embedded stack: `geoqueue demo`; and `geoqueue stack`."""
from __future__ import annotations

import signal
import sys
import time

from producer.client import GeoQueue
from workers.local_stack import LocalStack
from workers.samples import scene
from workers.storage import S3Ref, parse_ref

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
  S3 (moto)    {stack.s3_url}      bucket {BUCKET}
  sandbox      {stack.sandbox_url}
  logs         {stack.run_dir}

  export GEOQUEUE_REDIS_URL={stack.redis_url}
  geoqueue submit immersity.disparity -p image=s3://{BUCKET}/path/to/photo.jpg --watch

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


def print_results(stack: LocalStack, queue: GeoQueue, job_ids: dict[str, str]) -> bool:
    store = stack.object_store()

    def link(uri: str) -> str:
        return store.presign_get(parse_ref(uri))

    ok = True
    for label, job_id in job_ids.items():
        job = queue.status(job_id)
        say(f"\n{label}: {job.state} (job {job.id}, {job.credits} credits)")
        if job.state != "succeeded":
            ok = False
            say(f"  error: {job.error}")
            continue
        outputs = job.result.get("outputs") or {job.result["image"]: job.result}
        for image, produced in outputs.items():
            say(f"  {image}")
            for kind in ("disparity", "animation"):
                if kind in produced:
                    say(f"    {kind:<9} {produced[kind]}\n              {link(produced[kind])}")
    return ok


def run_demo() -> int:
    say("starting the embedded stack (Redis, moto S3, sandbox vendors, workers, beat, Flower) ...")
    with LocalStack() as stack:
        say(f"  Flower: {stack.flower_url}  (user {stack.flower_user}, password {stack.flower_password})")
        queue = GeoQueue(stack.redis_url)
        refs = upload_samples(stack, "demo/photos/")
        say(f"uploaded {len(refs)} sample photos to s3://{BUCKET}/demo/photos/")
        job_ids = {
            "disparity batch": queue.submit("immersity.batch", {"prefix": f"s3://{BUCKET}/demo/photos/"}),
            "disparity + animation": queue.submit("immersity.disparity", {
                "image": refs[0].uri, "animation": {"animationType": "mp4", "animationLength": 4}}),
        }
        show_progress(queue, job_ids)
        ok = print_results(stack, queue, job_ids)
        say(f"\nFlower was at {stack.flower_url}; logs in {stack.run_dir}")
        say("stopping the stack ...")
    say("done." if ok else "finished with failures.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_demo())
