"""The settings the embedded stack gives its processes: the caller's environment with the stack's
own settings, and the vendors' and S3's addresses and sandbox credentials once the stand-ins run."""
from __future__ import annotations

import os

from devstack.commands import REPO_ROOT

SANDBOX_IMMERSITY = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}


def process_env(isolated: bool, settings_env: dict[str, str]) -> dict[str, str]:
    """This environment (without its GEOQUEUE_* settings when `isolated`), the repository importable,
    output unbuffered, then `settings_env` over it."""
    env = {k: v for k, v in os.environ.items() if not (isolated and k.startswith("GEOQUEUE_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings_env)
    return env


def sandbox_settings(sandbox_url: str, s3_url: str) -> dict[str, str]:
    """The fleet's vendor and S3 settings pointed at the stand-ins, with the accounts they accept."""
    return {
        "GEOQUEUE_S3_ENDPOINT_URL": s3_url,
        "GEOQUEUE_S3_ACCESS_KEY_ID": "sandbox-access-key",
        "GEOQUEUE_S3_SECRET_ACCESS_KEY": "sandbox-secret-key",
        "GEOQUEUE_IMMERSITY_API_URL": f"{sandbox_url}/immersity",
        "GEOQUEUE_IMMERSITY_TOKEN_URL": f"{sandbox_url}/immersity/auth/realms/immersity/protocol/openid-connect/token",
        "GEOQUEUE_IMMERSITY_CLIENT_ID": SANDBOX_IMMERSITY["client_id"],
        "GEOQUEUE_IMMERSITY_CLIENT_SECRET": SANDBOX_IMMERSITY["client_secret"],
        "GEOQUEUE_IMMERSAL_URL": f"{sandbox_url}/immersal",
        "GEOQUEUE_IMMERSAL_LOGIN": "sandbox@example.com",
        "GEOQUEUE_IMMERSAL_PASSWORD": "sandbox-password",
        "GEOQUEUE_DRONEMAPPER_URL": f"{sandbox_url}/dronemapper",
        "GEOQUEUE_DRONEMAPPER_USERNAME": "sandbox",
        "GEOQUEUE_DRONEMAPPER_PASSWORD": "sandbox-password",
        "GEOQUEUE_MAPILLARY_GRAPH_URL": f"{sandbox_url}/mapillary/graph",
        "GEOQUEUE_MAPILLARY_TILES_URL": f"{sandbox_url}/mapillary/tiles",
        "GEOQUEUE_MAPILLARY_UPLOAD_URL": f"{sandbox_url}/mapillary/rupload",
        "GEOQUEUE_MAPILLARY_LEGACY_UPLOAD_URL": f"{sandbox_url}/mapillary/s3/mapillary.uploads.images",
        "GEOQUEUE_MAPILLARY_TOKEN": "MLY|4242424242424242|sandbox-user-token",
        "GEOQUEUE_MAPILLARY_USERNAME": "sandbox_uploader",
        "GEOQUEUE_MAPILLARY_PERMISSION_HASH": "sandbox-permission-hash",
        "GEOQUEUE_MAPILLARY_SIGNATURE_HASH": "sandbox-signature-hash",
    }
