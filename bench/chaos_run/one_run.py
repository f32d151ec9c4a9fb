"""One chaos run, start to verdict: with the faults (chaos) or without them (the baseline)."""
from __future__ import annotations

from collections import Counter

from bench.chaos_run.batch import Batch
from bench.chaos_run.faults import Chaos
from bench.chaos_run.fleet import Run
from bench.chaos_run.verdict import Report


def run_once(batch: Batch, seed: int, settings: dict[str, str], with_faults: bool, horizon_s: float = 0,
             redis_setup: str | None = None) -> Report:
    """`redis_setup`: the Redis under the fleet, the stack's own (None) or one of fleet.REDIS_SETUPS,
    which the chaos then fails over instead of restarting it."""
    title = "chaos" if with_faults else "baseline"
    print(f"\n{title}: starting a fresh stack ...", flush=True)
    run = Run(batch, seed, settings, redis_setup)
    try:
        run.start()
        run.prepare_batch()
        run.faults(errors=with_faults)
        chaos = Chaos(run, horizon_s, seed) if with_faults else None
        run.submit_all()
        if chaos is not None:
            chaos.start()
        print(f"{title}: {len(run.submitted)} jobs submitted; logs in {run.stack.run_dir}", flush=True)
        try:
            seconds = run.wait(chaos)
        finally:
            if chaos is not None:
                chaos.stop()
        run.faults(errors=False)
        report = Report(title, run.verdicts(), {}, seconds, chaos.summary() if chaos else [])
        report.duplicates = run.duplicates()
        report.left_held = run.left_held()
        report.exited = run.unasked_exits(chaos.kills.killed if chaos else Counter())
        report.streams_cut = run.streams_cut()
        return report
    finally:
        run.stop()
