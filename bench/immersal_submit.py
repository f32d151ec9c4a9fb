"""Immersal image submission, measured in one run against one sandbox, at each added latency given
(added to every Immersal call):

1. speed, N images of ~1 MB: the vendor doc's one-by-one /captureb64 loop, the same loop over
   binary /capture (our client), and geoqueue's immersal.build_map (chunks submitted in parallel),
   with the CPU seconds per image that geoqueue's own processes spent (worker process trees and
   redis-server; the sandbox and moto share the machine but are not ours);
2. memory: peak RSS of the transfer worker (which submits) and of the control worker (which checks
   the inputs) while build_map submits 200 and then 1,000 images, each run on freshly started workers.

`--replica N` then runs build_map N more times on the same images without a replica and N times with
one attached to the stack's Redis (devstack/redis_replica.py), alternating, so that every capture's
marker waits for it (runtime/once.py); reported: the medians, their ratio, and the WAITs each build sent.

Every loop reads its images from the same S3 (moto) as the workers do. The stack runs the fleet's
default settings unless --setting says otherwise. Run by hand:

    python bench/immersal_submit.py --latency-ms 20,100 [--images 200] [--memory-runs 200,1000]
    python bench/immersal_submit.py --latency-ms 20 --images 40 --memory-runs ""     # the small version
    python bench/immersal_submit.py --latency-ms 20,100 --images 200 --memory-runs "" --replica 3
"""
from __future__ import annotations

import argparse
import base64
import csv
import functools
import io
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import CpuMeter  # noqa: E402
from bench.memory import PeakMemory, process_tree  # noqa: E402
from bench.options import add_setting_option, settings_from  # noqa: E402
from config.settings import Settings  # noqa: E402
from devstack.local_stack import LocalStack  # noqa: E402
from devstack.redis_replica import Replica  # noqa: E402
from devstack.samples import scene  # noqa: E402
from geoqueue import GeoQueue, replicas  # noqa: E402
from geoqueue.s3ref import S3Ref  # noqa: E402
from tasks.immersal.records import DEFAULT_CHUNK_SIZE  # noqa: E402
from vendors.immersal import ImmersalClient  # noqa: E402

BUCKET = "geoqueue"
LOGIN, PASSWORD = "sandbox@example.com", "sandbox-password"
INTRINSICS = {"fx": 1455.0, "fy": 1455.0, "ox": 960.0, "oy": 720.0}
COLUMNS = ["file", "run", "index", "anchor", "px", "py", "pz", *[f"r{i}{j}" for i in range(3) for j in range(3)],
           "fx", "fy", "ox", "oy"]


# --- test photos: one noisy 1920x1440 JPEG of ~1 MB, made distinct per image by a comment segment ---
def base_photo() -> bytes:
    pixels = np.asarray(Image.open(io.BytesIO(scene(0, 1920, 1440))), dtype=np.int16)
    noisy = np.clip(pixels + np.random.default_rng(1).normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, format="JPEG", quality=92)
    return out.getvalue()


def variant(photo: bytes, n: int) -> bytes:
    comment = f"geoqueue bench image {n}".encode()
    return photo[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + photo[2:]


def put_site(store, photo: bytes, count: int, label: str) -> tuple[str, list[dict]]:
    prefix = f"bench/{label}-{int(time.time())}/"
    rows = [{"file": f"img-{i:04d}.jpg", "run": 0, "index": i, "anchor": int(i == 0), "px": 0.1 * i, "py": 1.5,
             "pz": 0.0, **{f"r{a}{b}": float(a == b) for a in range(3) for b in range(3)}, **INTRINSICS}
            for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.write(S3Ref(BUCKET, prefix + rows[i]["file"]), variant(photo, i), "image/jpeg"),
                      range(count)))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    store.write(S3Ref(BUCKET, prefix + "manifest.csv"), out.getvalue().encode(), "text/csv")
    return f"s3://{BUCKET}/{prefix}", rows


# --- the baselines: one image after the other ---
def doc_loop(url: str, store, prefix: str, rows: list[dict]) -> float:
    """The vendor doc's Login and SubmitImage (/captureb64), one image at a time."""
    login = requests.post(url + "/login", data=json.dumps({"login": LOGIN, "password": PASSWORD}))
    token = json.loads(login.text)["token"]
    requests.post(url + "/clear", data=json.dumps({"token": token, "bank": 0, "anchor": True}))
    started = time.perf_counter()
    for row in rows:
        image = store.read(S3Ref(BUCKET, prefix[len(f"s3://{BUCKET}/"):] + row["file"]))
        data = {"token": token, "bank": 0, **{k: row[k] for k in COLUMNS if k != "file"},
                "anchor": bool(row["anchor"]), "b64": str(base64.b64encode(image), "utf-8")}
        answer = json.loads(requests.post(url + "/captureb64", data=json.dumps(data)).text)
        assert answer["error"] == "none", answer
    return time.perf_counter() - started


def client_loop(url: str, store, prefix: str, rows: list[dict]) -> float:
    """One image at a time through our client: binary /capture, one kept-alive connection."""
    vendor = ImmersalClient(url, login=LOGIN, password=PASSWORD)
    vendor.clear(anchor=True)
    started = time.perf_counter()
    for row in rows:
        image = store.read(S3Ref(BUCKET, prefix[len(f"s3://{BUCKET}/"):] + row["file"]))
        vendor.capture(image, run=row["run"], index=row["index"], position=[row["px"], row["py"], row["pz"]],
                       rotation=[[row[f"r{a}{b}"] for b in range(3)] for a in range(3)],
                       intrinsics=[row[k] for k in ("fx", "fy", "ox", "oy")], anchor=bool(row["anchor"]))
    return time.perf_counter() - started


# --- geoqueue ---


def build(queue: GeoQueue, stack: LocalStack, prefix: str, count: int, name: str, progress=None) -> dict:
    """Submit build_map; times to the construct call (all images in) and the capture span at the sandbox,
    and the CPU seconds geoqueue's processes spent until the construct call. `progress(done)` is called
    with the images submitted so far at every look at the job."""
    since = time.time()
    ours = [process_tree(stack.processes[name].popen.pid) for name in ("control", "transfer", "redis")]
    waits = wait_calls(queue)
    with CpuMeter(*ours) as cpu:
        started = time.perf_counter()
        job_id = queue.submit("immersal.build_map", {"images": prefix, "name": name})
        while not ((job := queue.status(job_id)).phase.startswith("construction") or job.finished):
            if progress is not None:
                progress(job.done)
            time.sleep(0.01)
        to_construct = time.perf_counter() - started
    job = queue.wait(job_id, timeout=600)
    assert job.result["images"] == count, job.result
    captures = [e["time"] for e in stack.sandbox("GET", "/_sandbox/journal/immersal")
                if e["path"] == "/immersal/capture" and e["time"] >= since]
    assert len(captures) == count, len(captures)
    return {"to_construct": to_construct, "capture_span": max(captures) - min(captures), "cpu": cpu.seconds,
            "waits": wait_calls(queue) - waits}


def wait_calls(queue: GeoQueue) -> int:
    return int(queue.redis.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def replica_rounds(queue: GeoQueue, stack: LocalStack, prefix: str, count: int, label: str, rounds: int) -> dict:
    """build_map without and with a replica of the stack's Redis, alternating; medians of each."""
    runs: dict[str, list[dict]] = {"without": [], "with": []}
    for n in range(rounds):
        for way in runs:
            with Replica(stack.redis_port) if way == "with" else nullcontext():
                time.sleep(replicas.CHECK_SECONDS + 1)     # every process counts the replicas afresh
                runs[way].append(build(queue, stack, prefix, count, f"Bench{way.title()}{label}{n}"))
    return {way: {key: statistics.median(r[key] for r in done) for key in done[0]} for way, done in runs.items()}


def restart_workers(stack: LocalStack) -> None:
    for name in ("control", "transfer"):
        stack.processes[name].stop()
        stack.start_worker(name)
    stack.wait_for_workers(["control", "transfer"])


def measure_speed(stack: LocalStack, queue: GeoQueue, store, photo: bytes, images: int, latency_ms: float,
                  replica: bool) -> dict:
    url = f"{stack.sandbox_url}/immersal"
    stack.sandbox("POST", "/_sandbox/faults/immersal", json={"latency_ms": latency_ms})
    prefix, rows = put_site(store, photo, images, f"speed{latency_ms:g}")
    doc = doc_loop(url, store, prefix, rows)
    ours = client_loop(url, store, prefix, rows)
    fleet = build(queue, stack, prefix, images, f"BenchSpeed{latency_ms:g}".replace(".", "_"))
    compared = replica_rounds(queue, stack, prefix, images, f"{latency_ms:g}".replace(".", "_"), replica) \
        if replica else None
    print(f"latency {latency_ms:g} ms, {images} images")
    print(f"  vendor doc loop (/captureb64, one by one)     {doc:7.2f} s  {images / doc:6.1f} images/s")
    print(f"  client loop (/capture, one by one)            {ours:7.2f} s  {images / ours:6.1f} images/s")
    print(f"  geoqueue build_map, captures first to last    {fleet['capture_span']:7.2f} s  "
          f"{images / fleet['capture_span']:6.1f} images/s")
    print(f"  geoqueue build_map, submit to construct call  {fleet['to_construct']:7.2f} s  "
          "(includes checking every image and the manifest)")
    print(f"  speed-up of geoqueue over the doc loop: {doc / fleet['capture_span']:.1f}x "
          f"(submit to construct: {doc / fleet['to_construct']:.1f}x); geoqueue's CPU "
          f"{1000 * fleet['cpu'] / images:.1f} ms/image (workers and Redis, submit to construct)", flush=True)
    if compared:
        print(f"  {replica} builds without and {replica} with a replica, alternating (medians):")
        for way, r in compared.items():
            print(f"    {way + ' a replica':17} captures first to last {r['capture_span']:6.2f} s, submit to construct "
                  f"{r['to_construct']:6.2f} s, CPU {1000 * r['cpu'] / images:.1f} ms/image, {r['waits']:.0f} WAITs")
        without, with_ = compared["without"], compared["with"]
        print(f"  with/without a replica: capture rate {without['capture_span'] / with_['capture_span']:.2f}, "
              f"submit to construct {without['to_construct'] / with_['to_construct']:.2f}", flush=True)
    return {"latency": latency_ms, "images": images, "doc": doc, "client": ours, **fleet, "replica": compared}


def speed_table(results: list[dict]) -> None:
    print("| latency | way | time | images/s | vs doc loop | geoqueue CPU ms/image (workers, Redis) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        n, doc, replica = r["images"], r["doc"], (r["replica"] or {}).get("with")
        ways = [("vendor doc loop, /captureb64 one by one", doc, ""),
                ("client loop, /capture one by one", r["client"], ""),
                ("geoqueue build_map, first to last capture", r["capture_span"], ""),
                ("geoqueue build_map, submit to construct call", r["to_construct"], f"{1000 * r['cpu'] / n:.1f}")]
        if replica:
            ways += [("geoqueue build_map with a replica, first to last capture", replica["capture_span"], ""),
                     ("geoqueue build_map with a replica, submit to construct call", replica["to_construct"],
                      f"{1000 * replica['cpu'] / n:.1f}")]
        for way, seconds, cpu in ways:
            print(f"| {r['latency']:g} ms | {way} | {seconds:.2f} s | {n / seconds:.1f} | "
                  f"{doc / seconds:.1f}x | {cpu} |")


def note_quarters(quarters: dict[int, float], memory: PeakMemory, count: int, done: int) -> None:
    """Note the peak so far (MB) the first time `done` of `count` images passes each quarter."""
    for quarter in range(1, 4):
        if done >= quarter * count / 4 and quarter not in quarters:
            quarters[quarter] = memory.peak_total / 2**20


def measure_memory(stack: LocalStack, queue: GeoQueue, store, photo: bytes, counts: list[int]) -> None:
    print("peak memory (RSS, MB) while build_map submits, fresh workers each run:")
    for count in counts:
        prefix, _ = put_site(store, photo, count, f"memory{count}")
        restart_workers(stack)
        transfer = PeakMemory(process_tree(stack.processes["transfer"].popen.pid))
        control = PeakMemory(process_tree(stack.processes["control"].popen.pid))
        idle = transfer.peak_total
        quarters: dict[int, float] = {}       # the transfer worker's peak so far when a quarter of the images was in
        progress = functools.partial(note_quarters, quarters, transfer, count)
        with transfer, control:
            build(queue, stack, prefix, count, f"BenchMemory{count}", progress)
        so_far = ", ".join(f"{q * 25}% {mb:.0f}" for q, mb in sorted(quarters.items()))
        print(f"  {count:5d} images: transfer worker {transfer.peak_total / 2**20:6.0f} (idle {idle / 2**20:.0f}; "
              f"peak so far at {so_far}), control worker {control.peak_total / 2**20:6.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="images of the speed runs (0: memory runs only)")
    parser.add_argument("--memory-runs", default="200,1000", help="image counts of the memory runs (empty: none)")
    parser.add_argument("--latency-ms", default="20,100", help="comma-separated added latencies")
    parser.add_argument("--replica", type=int, default=0, metavar="N",
                        help="then N builds without and N with a replica of the Redis, alternating")
    add_setting_option(parser)
    args = parser.parse_args()
    memory_runs = [int(n) for n in args.memory_runs.split(",") if n]

    settings = settings_from(args)
    stack = LocalStack(settings_env=settings, isolated=True, flower=False, beat=True).start()
    try:
        stack.sandbox("POST", "/_sandbox/config/immersal",
                      json={"image_max": max([args.images, *memory_runs]) + 10, "construct_seconds": 1.0})
        queue, store = GeoQueue(stack.redis_url), stack.object_store()
        photo = base_photo()
        defaults = Settings.model_fields
        print(f"{len(photo) / 2**20:.2f} MB images; settings: {settings or 'the fleet defaults'} (defaults: transfer "
              f"concurrency {defaults['transfer_concurrency'].default}, max_parallel "
              f"{defaults['immersal_max_parallel'].default}, chunks of {DEFAULT_CHUNK_SIZE})", flush=True)
        latencies = [float(v) for v in args.latency_ms.split(",")]
        if args.images:
            speed_table([measure_speed(stack, queue, store, photo, args.images, latency, args.replica)
                         for latency in latencies])
        if memory_runs:
            stack.sandbox("POST", "/_sandbox/faults/immersal", json={"latency_ms": latencies[0]})
            measure_memory(stack, queue, store, photo, memory_runs)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
