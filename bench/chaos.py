"""The chaos run: a mixed batch of every vendor's long jobs on three workers, once without faults
(the baseline) and once with all of them at the same time, each on a fresh embedded stack:

- SIGKILLs of busy workers (their whole process group, as the OOM killer would), among them one
  while an Immersal capture is under way, one while a DroneMapper task creation is, and one while
  a Mapillary image upload is; the stack's supervision starts each killed worker again;
- one Redis restart (SIGKILL, 5 s down);
- 20% HTTP 500 and 5% 429 (Retry-After 2 s) from every vendor, on every call;
- tokens that stop working mid-run, for every vendor whose tokens do: Immersity's expire, Immersal's
  are revoked, DroneMapper's expire (the vendor's clock jumps ahead); Mapillary's do not expire.

It prints, for both runs, the jobs right (succeeded, with the expected outputs in S3 and at the
vendor), failed (with their errors), unfinished and lost (no record, or a record that never moved),
the duplicate vendor side effects the sandbox's counters show, and the time to finish; it exits
non-zero when a run misses the goal: every job right, no duplicate, none lost, no process exited,
every event stream followed to the job's end.

    python bench/chaos.py            # the batch of the issue: 10 jobs, 10 kills
    python bench/chaos.py --small    # one job of each kind, 3 kills (tests/fleet/test_chaos.py, in CI)

With --failover, Redis fails over instead of restarting, both runs on the Redis it needs
(bench/chaos_run/redis_ha.py, failovers.py):

    --failover sentinel   a primary, a replica and three sentinels, the fleet on sentinel:// URLs;
                          the primary SIGKILLed, the replica promoted, the old primary back as a replica
    --failover managed    the Redis the fleet points at becomes a replica of another (READONLY to
                          every write) for 10 s, then primary again, as behind a managed service's DNS name

Every run also checks that no process of the fleet (workers, beat, the API, the webhook deliverer,
the exporter) exited without being killed on purpose, and that each job's server-sent event stream,
followed over the HTTP API from the submit, ended with the job's end.

Both runs slow a few calls on purpose (the vendor's speed, not a fault), so that a kill can land
while one of them is under way.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chaos_run.batch import FULL, SMALL  # noqa: E402
from bench.chaos_run.fleet import REDIS_SETUPS, SETTINGS  # noqa: E402
from bench.chaos_run.one_run import run_once  # noqa: E402
from bench.chaos_run.report import print_reports  # noqa: E402
from bench.options import add_setting_option, settings_from  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="one job of each kind, 3 kills (CI)")
    parser.add_argument("--seed", type=int, default=7, help="of the faults drawn and the workers picked")
    parser.add_argument("--no-baseline", action="store_true", help="the chaos run alone (no time ratio)")
    parser.add_argument("--failover", choices=sorted(REDIS_SETUPS), help="a Redis failover instead of a restart")
    add_setting_option(parser)
    args = parser.parse_args(argv)
    settings = settings_from(args)
    batch = SMALL if args.small else FULL
    reports = []
    if not args.no_baseline:
        reports.append(run_once(batch, args.seed, settings, with_faults=False, redis_setup=args.failover))
    # The faults spread over the baseline's time plus one visibility timeout (what a killed worker's
    # messages wait before they come back).
    baseline = reports[0].seconds if reports else batch.deadline_s / 10
    horizon = baseline + float(SETTINGS["GEOQUEUE_VISIBILITY_TIMEOUT"])
    reports.append(run_once(batch, args.seed, settings, with_faults=True, horizon_s=horizon,
                            redis_setup=args.failover))
    print_reports(batch, reports)
    met = all(report.goal_met for report in reports)
    print("\ngoal " + ("met: every job right, no duplicate, none lost, nothing left held, no process exited, "
                        "every event stream followed to the end" if met else "MISSED"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
