"""Dispatch overhead: no-op tasks through the fleet's control worker vs plain Celery, same Redis,
same concurrency, in one run (rounds alternate so that both share the machine's noise).

- geoqueue: the control worker started exactly as the fleet's process definition says
  (devstack/processes.py), fed by the fleet's configured app (workers.celery_app.configure);
- plain: the same command line (`-c`, log level) for an app with Celery's defaults, without `-E`.

The task is Celery's built-in `celery.accumulate` (returns its argument), so the fleet's worker runs
with its own app and nothing added. Reported per side: tasks/s (median and best of the rounds),
and the CPU milliseconds per task of the worker's process tree, of redis-server, and of the
sending process (this one). `--undo` adds fleet workers with one of the measures undone
(`events`: control tasks send task-sent and store STARTED; `freeze`: no gc.freeze before forking;
`recycle`: a prefork child replaced after 200 tasks, not 1000), to show what each saves, or with one
of the fleet's reliability settings set back to Celery's default (`prefetch`: 4 messages per process,
not 1; `acks`: acked as the task starts, not after it; `taskevents`: no -E), to show what each costs.
`--replica` runs every round twice, without and then with a replica of the Redis attached
(devstack/redis_replica.py), and then times job records created one after another (each waits for
the replica when there is one: geoqueue/replicas.py) without and with it.

    python bench/dispatch.py [--tasks 2000] [--concurrency 4] [--rounds 5]
                             [--undo events,freeze,recycle,prefetch,acks,taskevents] [--replica]
    python bench/dispatch.py --tasks 200 --rounds 2        # the small version
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import CpuMeter  # noqa: E402
from bench.memory import process_tree  # noqa: E402
from devstack.commands import local_argv  # noqa: E402
from devstack.loopback import free_port  # noqa: E402
from devstack.processes import PROCESSES  # noqa: E402
from devstack.redis_replica import Replica  # noqa: E402
from devstack.redis_service import redis_answers, redis_server_binary  # noqa: E402
from devstack.waiting import wait_until  # noqa: E402

NOOP = "celery.accumulate"


def worker_argv(name: str, env: dict) -> list[str]:
    """The control process definition; the baseline and the variants differ only where named."""
    argv = local_argv(PROCESSES["control"], env)
    argv[argv.index("-n") + 1] = f"{name}@%h"
    if name == "plain":
        argv[argv.index("-A") + 1] = "bench.apps:plain_app"
        argv[argv.index("-Q") + 1] = "celery"
        argv.remove("-E")
    elif name != "geoqueue":
        argv[argv.index("-A") + 1] = "bench.apps:fleet_variant"
        argv[argv.index("-Q") + 1] = f"bench-{name}"
        if name == "undo-taskevents":
            argv.remove("-E")
    return argv


def sender(name: str, url: str):
    """The app that sends to that worker, and the queue it sends to."""
    from celery import Celery

    if name == "plain":
        return Celery("bench-plain", broker=url, backend=url), "celery"
    from config.settings import Settings
    from workers.celery_app import configure

    app = Celery(f"bench-{name}")
    configure(app, Settings(redis_url=url))
    if name == "undo-events":
        app.amqp_cls = "celery.app.amqp:AMQP"     # task-sent for every task
    return app, "control" if name == "geoqueue" else f"bench-{name}"


def run_round(app, queue: str, count: int, meters: list) -> float:
    from celery import group

    with CpuMeter(*meters[0]) as worker, CpuMeter(meters[1]) as redis, CpuMeter(meters[2]) as me:
        started = time.perf_counter()
        results = group(app.signature(NOOP, args=(i,), kwargs={"index": 0}, queue=queue)
                        for i in range(count)).apply_async()
        values = results.get(timeout=600)
        elapsed = time.perf_counter() - started
    assert values == list(range(count))
    results.forget()
    return count / elapsed, [1000 * m.seconds / count for m in (worker, redis, me)]


def guarded_writes(url: str, count: int) -> tuple[float, int]:
    """Job records created one after another, per second, through a fresh client (so that it counts
    the replicas afresh); and the WAITs they sent."""
    from geoqueue.ledger import Ledger
    from geoqueue.redis_url import connect

    client = connect(url, decode_responses=True)
    ledger, prefix, waits = Ledger(client), uuid.uuid4().hex, wait_calls(client)
    started = time.perf_counter()
    for n in range(count):
        ledger.create(f"bench-{prefix}-{n}", "immersity.disparity", {"image": "s3://bench/image.jpg"})
    rate = count / (time.perf_counter() - started)
    return rate, wait_calls(client) - waits


def wait_calls(client) -> int:
    return int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def guarded_writes_table(url: str, port: int, count: int, rounds: int) -> None:
    rates: dict[str, list[float]] = {"no replica": [], "replica": []}
    waits = dict.fromkeys(rates, 0)
    for _ in range(rounds):
        for label in rates:
            with Replica(port) if label == "replica" else nullcontext():
                rate, waited = guarded_writes(url, count)
            rates[label].append(rate)
            waits[label] += waited
    print(f"job records created one after another ({count} a round; with a replica each waits for it):")
    for label, values in rates.items():
        print(f"  {label}: median {statistics.median(values):.0f}/s ({', '.join(f'{v:.0f}' for v in values)}), "
              f"{1000 / statistics.median(values):.2f} ms each, {waits[label] / (count * rounds):.2f} WAIT per record")
    ratio = statistics.median(rates["replica"]) / statistics.median(rates["no replica"])
    print(f"ratio replica/no replica: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4, help="GEOQUEUE_CONTROL_CONCURRENCY (the fleet's default)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--undo", default="",
                        help="comma-separated: events, freeze, recycle, prefetch, acks, taskevents")
    parser.add_argument("--replica", action="store_true", help="every round without and with a replica of the Redis")
    args = parser.parse_args()

    port = free_port()
    data = tempfile.mkdtemp(prefix="bench-redis-")
    redis = subprocess.Popen([redis_server_binary(), "--port", str(port), "--save", "", "--dir", data],
                             stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: redis_answers(url), 20, "redis")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOQUEUE_")}
    env.update({"GEOQUEUE_REDIS_URL": url, "BENCH_REDIS_URL": url,
                "GEOQUEUE_CONTROL_CONCURRENCY": str(args.concurrency),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    names = ["geoqueue", "plain", *(f"undo-{u}" for u in filter(None, args.undo.split(",")))]
    workers = {}
    try:
        for name in names:
            undo = {"BENCH_UNDO": name[len("undo-"):]} if name.startswith("undo-") else {}
            workers[name] = subprocess.Popen(worker_argv(name, env), env={**env, **undo}, cwd=ROOT,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                             start_new_session=True)
        import psutil

        senders = {name: sender(name, url) for name in names}
        meters = {name: ([process_tree(workers[name].pid)], lambda: [psutil.Process(redis.pid)],
                         lambda: [psutil.Process()])
                  for name in names}
        for name in names:
            run_round(*senders[name], 50, meters[name])   # warm up: connections, pool processes
        phases = ["", " +replica"] if args.replica else [""]
        rates = {name + phase: [] for name in names for phase in phases}
        cpu = {name + phase: [] for name in names for phase in phases}
        for _ in range(args.rounds):
            for phase in phases:
                with Replica(port) if phase else nullcontext():
                    for name in names:
                        rate, ms = run_round(*senders[name], args.tasks, meters[name])
                        rates[name + phase].append(rate)
                        cpu[name + phase].append(ms)
        print(f"{args.tasks} no-op tasks a round, {args.rounds} rounds, worker concurrency {args.concurrency}")
        print("| worker | tasks/s median | best | rounds | CPU ms/task: worker | redis | sender |")
        print("|---|---|---|---|---|---|---|")
        for label in rates:
            ms = [statistics.median(c[i] for c in cpu[label]) for i in range(3)]
            print(f"| {label} | {statistics.median(rates[label]):.0f} | {max(rates[label]):.0f} | "
                  f"{', '.join(f'{r:.0f}' for r in rates[label])} | {ms[0]:.2f} | {ms[1]:.2f} | {ms[2]:.2f} |")
        for label in rates:
            plain = "plain" + label[len(label.split(" ")[0]):]
            if label != plain:
                median = statistics.median(rates[label]) / statistics.median(rates[plain])
                print(f"ratio {label}/{plain}: median {median:.2f}, best {max(rates[label]) / max(rates[plain]):.2f}")
        if args.replica:
            guarded_writes_table(url, port, args.tasks, args.rounds)
    finally:
        for worker in workers.values():
            worker.terminate()
        for worker in workers.values():
            worker.wait(30)
        redis.terminate()


if __name__ == "__main__":
    main()
