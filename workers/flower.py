"""Start Flower for the fleet's operators: authenticated, read-only, never with a weak password
(workers/flower_password.py says which are) nor the example one.

Read-only: Flower cannot start a task (an internal one, or a job under an id already used, which
would run and charge it twice) nor control workers (shut down, resize pools). Jobs come in through
`geoqueue submit`, the Python client or the HTTP API, which check them and record them first.
Credentials reach Flower through its environment (FLOWER_BASIC_AUTH), never its command line,
which any user of the host can read. Flower's /metrics and /healthcheck answer without auth.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from config.settings import get_settings
from workers.flower_password import weakness

# The password deploy/env.example and deploy/k8s/secret.yaml ship, to be replaced before use.
EXAMPLE_PASSWORDS = frozenset({"change-me"})


def refusal(basic_auth: str | None, allow_unauthenticated: bool) -> str | None:
    """Why Flower must not start with these credentials, or None."""
    if not basic_auth:
        return None if allow_unauthenticated else (
            "refusing to start Flower without authentication: set GEOQUEUE_FLOWER_BASIC_AUTH=user:password "
            "(or GEOQUEUE_FLOWER_ALLOW_UNAUTHENTICATED=true for a private experiment)")
    for pair in basic_auth.split(","):
        user, _, password = pair.partition(":")
        if not user or not password:
            return "refusing to start Flower: GEOQUEUE_FLOWER_BASIC_AUTH must be user:password[,user:password...]"
        if password in EXAMPLE_PASSWORDS:
            return f"refusing to start Flower with the example password of user {user}: choose your own"
        weak = weakness(user, password)
        if weak:
            return (f"refusing to start Flower: the password of user {user} in GEOQUEUE_FLOWER_BASIC_AUTH is too "
                    f"weak: {weak}")
    return None


def main() -> None:
    settings = get_settings()
    basic_auth = settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth else None
    problem = refusal(basic_auth, settings.flower_allow_unauthenticated)
    if problem:
        sys.exit(problem)
    env = dict(os.environ)
    if basic_auth:
        env["FLOWER_BASIC_AUTH"] = basic_auth
    conf = Path(__file__).with_name("flowerconfig.py")
    # This interpreter, not whatever `celery` PATH finds: the fleet's virtualenv need not be on PATH.
    argv = [sys.executable, "-m", "celery", "-A", "workers", "flower", f"--conf={conf}",
            f"--port={settings.flower_port}", f"--address={settings.flower_address}", "--purge_offline_workers=300",
            "--read_only=True"]
    os.execve(sys.executable, argv, env)


if __name__ == "__main__":
    main()
