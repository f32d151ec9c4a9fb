"""The chaos run (bench/chaos.py): every fault at once, and still every job right, none lost, no
vendor side effect twice."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EMPTY_PATH

CHAOS = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


@pytest.mark.slow
def test_the_small_chaos_run_meets_the_goal():
    """bench/chaos.py --small: the baseline, then one job of each kind through 3 kills (one mid Immersal
    capture, one mid DroneMapper task creation, one mid Mapillary upload), a Redis restart, 20% 5xx and
    5% 429 from every vendor and tokens that stop working. Every job right, no duplicate, none lost."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOQUEUE_")} | {"PATH": EMPTY_PATH}
    finished = subprocess.run([sys.executable, str(CHAOS), "--small"], cwd=CHAOS.parent.parent, env=env,
                              capture_output=True, text=True, timeout=540)
    print(finished.stdout[-6000:], finished.stderr[-3000:])
    assert finished.returncode == 0, finished.stdout[-3000:]
    assert "goal met" in finished.stdout
    assert "MISSED" not in finished.stdout and "NOT" not in finished.stdout    # every fault was delivered
    assert "tokens stopped working" in finished.stdout and "tokens stopped working 0 times" not in finished.stdout
