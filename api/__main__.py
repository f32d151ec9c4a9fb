"""`python -m api`: the HTTP API and job pages on GEOQUEUE_API_ADDRESS:GEOQUEUE_API_PORT."""
from __future__ import annotations

import argparse
import logging

import uvicorn

from config import redaction
from config.settings import get_settings

DESCRIPTION = """\
Serve geoqueue's HTTP API (/v1, OpenAPI at /docs) and its job pages (/ui) with uvicorn.
Every setting comes from the environment (README, "Settings"); the main ones:
  GEOQUEUE_API_ADDRESS   address to listen on (default 0.0.0.0)
  GEOQUEUE_API_PORT      port to listen on (default 8080)
  GEOQUEUE_API_KEYS      the keys' hashes: `python -m api.keys NAME submit read` makes one
  GEOQUEUE_REDIS_URL     the fleet's Redis
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # Arguments are parsed before anything starts, so that `--help` or a typo never opens a port.
    parser = argparse.ArgumentParser(prog="python -m api", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    parse_args(argv)
    settings = get_settings()
    config = uvicorn.Config("api.app:create_app", factory=True, host=settings.api_address, port=settings.api_port,
                            proxy_headers=True, log_level="info")
    server = uvicorn.Server(config)  # configures uvicorn's loggers; then every handler redacts secrets
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", ""):
        redaction.install(logging.getLogger(name), settings)
    server.run()


if __name__ == "__main__":
    main()
