"""`python -m api`: the HTTP API and job pages on GEOQUEUE_API_ADDRESS:GEOQUEUE_API_PORT."""
from __future__ import annotations

import logging

import uvicorn

from config import redaction
from config.settings import get_settings


def main() -> None:
    settings = get_settings()
    config = uvicorn.Config("api.app:create_app", factory=True, host=settings.api_address, port=settings.api_port,
                            proxy_headers=True, log_level="info")
    server = uvicorn.Server(config)  # configures uvicorn's loggers; then every handler redacts secrets
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", ""):
        redaction.install(logging.getLogger(name), settings)
    server.run()


if __name__ == "__main__":
    main()
