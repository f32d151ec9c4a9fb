"""The small version of each benchmark of issues 11, 14 and 22 runs to its end and prints its figures
(bench/README.md gives the full runs and their figures). Each script starts its own stack, with
nothing of ours found through PATH."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EMPTY_PATH

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.slow

SMALL = [
    pytest.param(["bench/immersal_submit.py", "--latency-ms", "20", "--images", "20", "--memory-runs", ""],
                 "| latency | way |", id="immersal_submit"),
    pytest.param(["bench/immersity_batch.py", "--latency-ms", "20", "--images", "20", "--hold", "1"],
                 "| latency | max_parallel | peak calls in flight |", id="immersity_batch"),
    pytest.param(["bench/mapillary_harvest.py", "--latency-ms", "20", "--what", "sequence", "--sequence-images", "100"],
                 "| latency | harvest | images |", id="mapillary_harvest"),
    pytest.param(["bench/dispatch.py", "--tasks", "100", "--rounds", "1"],
                 "| worker | tasks/s median |", id="dispatch"),
    pytest.param(["bench/harvest_faults.py", "--latency-ms", "20", "--scale", "0.02"],
                 "| latency | faults | wall time |", id="harvest_faults"),
    pytest.param(["bench/dispatch.py", "--tasks", "50", "--rounds", "1", "--replica"],
                 "ratio replica/no replica", id="dispatch_replica"),
    pytest.param(["bench/redis_footprint.py", "--vendors", "immersity", "--sizes", "2,4", "--idle", "3"],
                 "| vendor | items per job | retained per job |", id="redis_footprint"),
]


@pytest.mark.parametrize("argv, header", SMALL)
def test_the_small_benchmark_runs_and_prints_its_table(argv, header):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOQUEUE_")}
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env={**env, "PATH": EMPTY_PATH}, capture_output=True,
                          text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert header in done.stdout, done.stdout[-3000:]
