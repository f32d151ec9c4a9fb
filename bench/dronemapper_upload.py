"""Uploading a survey to DroneMapper: geoqueue's streamed uploads vs one requests multipart POST that
reads the files into memory first (the vendor doc's example), the same images in the same S3 and
the same sandbox, in one run.

For each way: throughput (survey bytes / seconds from start until the vendor task holds every image)
and the peak resident memory of the process(es) doing the upload, sampled every 20 ms.

    python bench/dronemapper_upload.py [--images 300] [--mb 8] [--rounds 1]
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import struct
import sys
import time
from pathlib import Path

import psutil
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.memory import PeakMemory  # noqa: E402
from devstack.local_stack import LocalStack  # noqa: E402
from geoqueue import GeoQueue  # noqa: E402
from geoqueue.s3ref import S3Ref  # noqa: E402

PREFIX = "bench-upload/"
SETTINGS = {"GEOQUEUE_CONTROL_CONCURRENCY": "2", "GEOQUEUE_TRANSFER_CONCURRENCY": "4"}
MiB = 1 << 20




def survey_jpeg(mb: float) -> bytes:
    """A noise photo of about `mb` MB (noise does not compress: JPEG keeps about 1 byte a pixel)."""
    side = int((mb * 1e6) ** 0.5)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, format="JPEG", quality=92)
    return out.getvalue()


def distinct(jpeg: bytes, text: str) -> bytes:
    comment = text.encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:]


def put_survey(stack: LocalStack, images: int, mb: float) -> int:
    store, picture = stack.object_store(), survey_jpeg(mb)
    total = 0
    for i in range(images):
        data = distinct(picture, f"DJI_{i:04d}.JPG")
        store.write(S3Ref("geoqueue", f"{PREFIX}DJI_{i:04d}.JPG"), data, "image/jpeg")
        total += len(data)
    return total


def pool_processes(stack: LocalStack) -> list[psutil.Process]:
    workers = [psutil.Process(stack.processes[name].popen.pid) for name in ("control", "transfer")]
    return [child for worker in workers for child in worker.children(recursive=True)]


def run_geoqueue(stack: LocalStack, partial: bool) -> tuple[float, tuple[float, float]]:
    stack.sandbox("POST", "/_sandbox/config/dronemapper", json={"partial_upload": partial, "running_s": 600})
    queue = GeoQueue(stack.redis_url)
    with PeakMemory(lambda: pool_processes(stack)) as memory:
        started = time.perf_counter()
        job_id = queue.submit("dronemapper.process_survey", {"images": f"s3://geoqueue/{PREFIX}"})
        while queue.status(job_id).state != "waiting":  # every image is at the vendor, processing began
            job = queue.status(job_id)
            if job.finished:
                raise SystemExit(f"the survey ended {job.state}: {job.error}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    return elapsed, memory.highest()


def doc_upload(sandbox_url: str, settings_env: dict, done) -> None:
    """The vendor doc's example, fed from S3: every image read into memory, then one requests POST."""
    from config.settings import Settings
    from services.storage import ObjectStore

    keys = {k[len("GEOQUEUE_"):].lower(): v for k, v in settings_env.items() if k.startswith("GEOQUEUE_")}
    store = ObjectStore(Settings(**keys))
    api = f"{sandbox_url}/dronemapper/api"
    token = requests.post(f"{api}/token-auth/", data={"username": "sandbox", "password": "sandbox-password"},
                          timeout=60).json()["token"]
    headers = {"Authorization": f"JWT {token}"}
    project = requests.post(f"{api}/projects/", headers=headers, data={"name": "doc"}, timeout=60).json()["id"]
    started = time.perf_counter()
    refs = [ref for ref, _size in store.list(S3Ref("geoqueue", PREFIX))]
    files = [("images", (ref.name, store.read(ref), "image/jpg")) for ref in refs]
    res = requests.post(f"{api}/projects/{project}/tasks/", headers=headers, files=files,
                        data={"options": "[]", "name": "doc example"}, timeout=3600)
    res.raise_for_status()
    done.put(time.perf_counter() - started)


def run_doc_example(stack: LocalStack) -> tuple[float, tuple[float, float]]:
    context = multiprocessing.get_context("spawn")
    done = context.Queue()
    child = context.Process(target=doc_upload, args=(stack.sandbox_url, stack.env, done))
    child.start()
    with PeakMemory(lambda: [psutil.Process(child.pid)]) as memory:
        elapsed = done.get(timeout=3600)
    child.join()
    return elapsed, memory.highest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--mb", type=float, default=8.0, help="size of each image (MB)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    stack = LocalStack(settings_env=SETTINGS, isolated=True, flower=False, beat=False).start()
    try:
        total = put_survey(stack, args.images, args.mb)
        print(f"{args.images} images, {total / MiB:.0f} MiB in all ({total / args.images / MiB:.1f} MiB each), "
              f"{args.rounds} round(s)")
        ways = {"geoqueue, partial upload (4 images at a time)": lambda: run_geoqueue(stack, partial=True),
                "geoqueue, one streamed request": lambda: run_geoqueue(stack, partial=False),
                "doc example: files in memory, one requests POST": lambda: run_doc_example(stack)}
        results: dict[str, list] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, run in ways.items():
                results[name].append(run())
        print("| upload | throughput MiB/s (rounds) | peak RSS of one process, MiB | its growth, MiB (rounds) |")
        print("|---|---|---|---|")
        for name, runs in results.items():
            rates = [total / MiB / elapsed for elapsed, _ in runs]
            peak = max(memory[0] for _, memory in runs)
            growths = ", ".join(f"{memory[1]:.0f}" for _, memory in runs)
            print(f"| {name} | {max(rates):.0f} ({', '.join(f'{r:.0f}' for r in rates)}) | {peak:.0f} | {growths} |")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
