"""How far one Redis carries the fleet: each vendor's main job's whole footprint in Redis, measured on
the embedded stack and the sandbox with the fleet's default settings, one job at a time.

For each vendor, a job at each of two sizes (items: images of an Immersity batch, an Immersal
build, a DroneMapper survey; images of a Mapillary harvest, from two boxes of the stand-in's world):

- retained: what Redis holds once the job ended and the fleet let go of it, beyond what it held
  before, by MEMORY USAGE of every key, grouped by what the key is for (bench/redis_keys.py: the
  record, items, once markers, fan-out, step records, indexes, events, Celery results and messages,
  ...); kept for GEOQUEUE_RESULT_EXPIRES (7 days by default), then it expires;
- peak: Redis's used_memory at its highest while the job ran, above where it started (keys,
  messages in flight, client buffers, allocator overhead);
- commands: INFO commandstats while the job ran and until the fleet let go of it, minus this
  script's own reads and minus what the idle fleet (pollers, beat, the sweeper) runs in that time;
- Redis CPU: redis-server's user+system seconds over the same span, minus the idle fleet's.

From the two sizes, each figure as a fixed part per job and a part per item; from those, a capacity
table for jobs of the sizes issue 22 calls realistic (extrapolated: README, "Capacity of one Redis").
Then the Redis connections each of the fleet's processes holds. Each vendor's smaller job runs once
unmeasured first: what the first job of a vendor creates for all that follow (its indexes, the
stream of ends) is not any one job's.

    python bench/redis_footprint.py --sizes 20,100 --repeat 3         # 2 sizes of each vendor's job
    python bench/redis_footprint.py --vendors immersity --sizes 2,4 --idle 3     # the small version
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.footprint_jobs import VENDORS, FootprintJob, prepare_jobs, settled  # noqa: E402
from bench.memory import process_tree  # noqa: E402
from bench.redis_keys import KINDS, PeakMemory, RedisReader, grown_by_kind, idle_rates  # noqa: E402
from config.settings import Settings  # noqa: E402
from devstack.local_stack import LocalStack  # noqa: E402
from geoqueue import GeoQueue  # noqa: E402

OURS = ("control", "transfer", "beat", "metrics", "api", "webhooks")
# Issue 22's realistic sizes: an Immersity batch, an Immersal build, a survey, a Mapillary harvest.
REFERENCE_ITEMS = {"immersity": 1000, "immersal": 500, "dronemapper": 300, "mapillary": 10_000}
GB = 1 << 30


def measure(stack: LocalStack, queue: GeoQueue, reader: RedisReader, job: FootprintJob, idle, redis_cpu) -> dict:
    before, calls, cpu = reader.sizes(), reader.command_calls(), redis_cpu()
    sent_before, started = Counter(reader.sent), time.monotonic()
    with PeakMemory(reader) as peak:
        job_id = queue.submit(job.name, job.params)
        record = queue.wait(job_id, timeout=1800, raise_on_failure=False)
        settled(stack, job_id)
    elapsed = time.monotonic() - started
    used = int(reader.info("memory")["used_memory"]) - peak.start
    ran = reader.command_calls() - calls
    cpu_seconds = redis_cpu() - cpu - idle[1] * elapsed
    mine = Counter(reader.sent) - sent_before
    net = Counter({name: n - mine[name] - idle[0][name] * elapsed for name, n in ran.items()})
    after = reader.sizes()
    assert record.state == "succeeded", (job.label, record.state, record.error)
    retained = grown_by_kind(before, after)
    return {"job": job, "seconds": elapsed, "retained": retained, "bytes": sum(retained.values()),
            "keys": len(after.keys() - before.keys()), "peak": peak.peak, "used": used,
            "commands": sum(n for n in net.values() if n > 0), "by_command": net, "cpu": cpu_seconds}


def median_of(runs: list[dict]) -> dict:
    """One job's figures over its runs: the median of each."""
    figures = {key: statistics.median(r[key] for r in runs) for key, value in runs[0].items()
               if isinstance(value, (int, float))}
    retained = {kind: statistics.median(r["retained"][kind] for r in runs) for kind in runs[0]["retained"]}
    names = {name for r in runs for name in r["by_command"]}
    by_command = Counter({name: statistics.median(r["by_command"][name] for r in runs) for name in names})
    return {**figures, "job": runs[0]["job"], "retained": retained, "by_command": by_command}


def per_item(small: dict, large: dict, key: str) -> tuple[float, float]:
    """(per job, per item) of a figure measured at two sizes."""
    items = large["job"].items - small["job"].items
    slope = (large[key] - small[key]) / items
    return small[key] - slope * small["job"].items, slope


def connections(stack: LocalStack, port: int) -> dict[str, int]:
    """TCP connections to Redis held by each of the fleet's processes (their process trees)."""
    held = {}
    for name in OURS:
        if name not in stack.processes:
            continue
        count = 0
        for process in process_tree(stack.processes[name].popen.pid)():
            try:
                count += sum(1 for c in process.net_connections(kind="tcp") if c.raddr and c.raddr.port == port)
            except psutil.Error:
                continue
        held[name] = count
    return held


def report(results: list[dict], idle) -> None:
    print("| vendor | job | items | seconds | retained bytes (keys) | used_memory after | new keys | peak used_memory "
          "| commands | Redis CPU ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['job'].vendor} | {r['job'].name} | {r['job'].items} | {r['seconds']:.0f} | {r['bytes']:,} | "
              f"{r['used']:,} | {r['keys']} | {r['peak']:,} | {r['commands']:,.0f} | {1000 * r['cpu']:.0f} |")
    print("\nretained bytes by kind of key:")
    print("| kind | " + " | ".join(f"{r['job'].vendor} {r['job'].items}" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for kind, _ in KINDS:
        if any(r["retained"][kind] for r in results):
            print(f"| {kind} | " + " | ".join(f"{r['retained'][kind]:,}" for r in results) + " |")
    print("\nmost run commands (net) of each vendor's larger job:")
    for r in results[1::2]:
        top = ", ".join(f"{name} {n:,.0f}" for name, n in r["by_command"].most_common(8))
        print(f"  {r['job'].vendor} ({r['job'].items} items): {top}")
    print(f"\nidle fleet: {sum(idle[0].values()):.1f} commands/s, Redis CPU {1000 * idle[1]:.1f} ms/s")
    print("\nper job and per item (from the two sizes):")
    print("| vendor | retained bytes: job + item | commands: job + item | Redis CPU ms: job + item "
          "| peak bytes: job + item |")
    print("|---|---|---|---|---|")
    for small, large in zip(results[::2], results[1::2], strict=True):
        figures = [per_item(small, large, key) for key in ("bytes", "commands", "cpu", "peak")]
        cells = [f"{job:,.0f} + {item:,.0f}" for job, item in figures[:2]]
        cells.append(f"{1000 * figures[2][0]:.0f} + {1000 * figures[2][1]:.2f}")
        cells.append(f"{figures[3][0]:,.0f} + {figures[3][1]:,.0f}")
        print(f"| {small['job'].vendor} | " + " | ".join(cells) + " |")


def capacity(results: list[dict], idle) -> None:
    """Jobs of the reference sizes per GB retained and per Redis core, from the per-job and per-item figures."""
    days = Settings.model_fields["result_expires"].default / 86400
    idle_commands, idle_cpu_ms = sum(idle[0].values()), 1000 * idle[1]
    print(f"\ncapacity, extrapolated to the reference sizes; records kept {days:g} days (GEOQUEUE_RESULT_EXPIRES); "
          f"the idle fleet's {idle_commands:.0f} commands/s and {idle_cpu_ms:.1f} ms/s of Redis CPU add to it:")
    print("| vendor | items per job | retained per job | jobs/day per GB of keys | items/day per GB | "
          "commands per job | Redis CPU per job | jobs/day at half of one Redis core |")
    print("|---|---|---|---|---|---|---|---|")
    for small, large in zip(results[::2], results[1::2], strict=True):
        vendor = small["job"].vendor
        items = REFERENCE_ITEMS[vendor]
        retained, commands, cpu = (sum(a * b for a, b in zip(per_item(small, large, key), (1, items), strict=True))
                                   for key in ("bytes", "commands", "cpu"))
        per_day = GB / (days * retained)
        print(f"| {vendor} | {items:,} | {retained / 2**20:.2f} MiB | {per_day:,.0f} | {per_day * items:,.0f} | "
              f"{commands:,.0f} | {cpu:.2f} s | {0.5 * 86400 / cpu:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vendors", default=",".join(VENDORS))
    parser.add_argument("--sizes", default="", help="two item counts for Immersity, Immersal and DroneMapper "
                        "(default: their own small pair; Mapillary's harvest boxes are fixed)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds the idle fleet is measured")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each job (its figures: their medians)")
    args = parser.parse_args()
    sizes = tuple(int(n) for n in args.sizes.split(",")) if args.sizes else None

    stack = LocalStack(isolated=True, flower=False, beat=True).start()
    try:
        queue = GeoQueue(stack.redis_url)
        reader = RedisReader(queue.redis)
        redis_process = psutil.Process(stack.processes["redis"].popen.pid)

        def redis_cpu() -> float:
            times = redis_process.cpu_times()
            return times.user + times.system

        jobs = prepare_jobs(stack, args.vendors.split(","), sizes)
        for job in jobs[::2]:              # what a vendor's first job creates for all (indexes, streams)
            settled(stack, queue.wait(queue.submit(job.name, job.warm_up_params()), timeout=1800).id)
        idle = idle_rates(reader, redis_cpu, args.idle)
        results, retained_in_all, memory_at_start = [], 0, reader.info("memory")
        for job in jobs:
            runs = []
            for _ in range(args.repeat):
                runs.append(measure(stack, queue, reader, job, idle, redis_cpu))
                retained_in_all += runs[-1]["bytes"]
                print(f"{job.label}: {runs[-1]['bytes']:,} bytes retained, {runs[-1]['commands']:,.0f} commands, "
                      f"Redis CPU {1000 * runs[-1]['cpu']:.0f} ms, {runs[-1]['seconds']:.0f} s", flush=True)
            results.append(median_of(runs))
        report(results, idle)
        capacity(results, idle)
        memory = reader.info("memory")
        print(f"\nover all the measured runs: keys retained {retained_in_all:,} bytes by MEMORY USAGE; Redis's "
              f"used_memory_dataset grew {memory['used_memory_dataset'] - memory_at_start['used_memory_dataset']:,}, "
              f"used_memory {memory['used_memory'] - memory_at_start['used_memory']:,}")
        held = connections(stack, int(stack.redis_url.rsplit(":", 1)[1].split("/")[0]))
        print("\nRedis connections held by each process (its process tree) after the jobs: " +
              ", ".join(f"{name} {n}" for name, n in held.items()))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
