"""Start Flower for the fleet, with basic auth on unless explicitly allowed off.

Credentials reach Flower through its environment (FLOWER_BASIC_AUTH), never its command line,
which any user of the host can read.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from workers.settings import get_settings


def main() -> None:
    settings = get_settings()
    env = dict(os.environ)
    if settings.flower_basic_auth:
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth.get_secret_value()
    elif not settings.flower_allow_unauthenticated:
        sys.exit("refusing to start Flower without authentication: set GEOQUEUE_FLOWER_BASIC_AUTH=user:password "
                 "(or GEOQUEUE_FLOWER_ALLOW_UNAUTHENTICATED=true for a private experiment)")
    conf = Path(__file__).with_name("flowerconfig.py")
    # This interpreter, not whatever `celery` PATH finds: the fleet's virtualenv need not be on PATH.
    argv = [sys.executable, "-m", "celery", "-A", "workers", "flower", f"--conf={conf}", f"--port={settings.flower_port}",
            f"--address={settings.flower_address}", "--purge_offline_workers=300"]
    os.execve(sys.executable, argv, env)


if __name__ == "__main__":
    main()
