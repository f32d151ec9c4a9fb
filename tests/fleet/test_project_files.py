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


def test_geoqueue_never_comes_from_a_package_index():
    """No requirement names the client distribution `geoqueue` (an index would serve whoever published
    the name), and every documented install of it or of the fleet takes it from ./client of the checkout."""
    import re
    import tomllib

    fleet = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = fleet["dependencies"] + [r for extra in fleet["optional-dependencies"].values() for r in extra]
    assert [r for r in requirements if re.match(r"geoqueue(?!-fleet)\b", r)] == []
    installs = {path: re.findall(r"pip install [^`\n&]*", (ROOT / path).read_text())
                for path in ("README.md", "deploy/Dockerfile", ".ci/run", "deploy/systemd/README.md")}
    assert all(installs.values()), installs
    for path, commands in installs.items():
        for command in commands:
            assert "./client" in command, f"{path}: {command}"
