"""The files that say how to run geoqueue agree with each other."""
from __future__ import annotations

from pathlib import Path

from devstack.processes import PROCESSES, STAND_INS

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_test_command_that_readme_gives():
    lines = (ROOT / ".ci/run").read_text().splitlines()
    command = [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]
    assert len(command) == 1
    assert f"   {command[0]}\n" in (ROOT / "README.md").read_text()


def test_procfile_matches_the_process_definitions():
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert procfile == {**PROCESSES, **STAND_INS}
