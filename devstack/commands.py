"""A process definition (devstack/processes.py) as the argv to run on this machine, from the repository root."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _expand(command: str, env: dict[str, str]) -> list[str]:
    """Fill ${VAR:-default} from env, as a shell would, then split."""
    out = command
    while "${" in out:
        start = out.index("${")
        end = out.index("}", start)
        name, _, default = out[start + 2:end].partition(":-")
        out = out[:start] + env.get(name, default) + out[end + 1:]
    return shlex.split(out)


# The Procfile's programs, run by this interpreter: a virtualenv that was never activated has
# neither `celery` nor its `python` on PATH, and PATH may hold another project's.
_THROUGH_INTERPRETER = {"celery": [sys.executable, "-m", "celery"], "python": [sys.executable]}


def local_argv(command: str, env: dict[str, str]) -> list[str]:
    """A process definition as argv for this machine: filled from env, its program this interpreter."""
    argv = _expand(command, env)
    return _THROUGH_INTERPRETER.get(argv[0], argv[:1]) + argv[1:]
