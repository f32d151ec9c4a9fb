"""The stack's stand-ins for what is on the internet: the sandbox vendors and S3 (moto), each in a
process of its own, the fleet's settings pointed at them, and the bucket made."""
from __future__ import annotations

import requests

from devstack.commands import local_argv
from devstack.loopback import free_port, http_ok
from devstack.processes import STAND_INS
from devstack.stack_settings import sandbox_settings
from devstack.waiting import wait_until


class SandboxServices:
    """LocalStack's stand-ins (a mixin: it spawns through the stack and sets the stack's env)."""

    def _start_sandbox(self) -> None:
        port, s3_port = free_port(), free_port()
        ports = {**self.env, "SANDBOX_HOST": "127.0.0.1", "SANDBOX_PORT": str(port), "SANDBOX_S3_PORT": str(s3_port)}
        for name, command in STAND_INS.items():
            self.spawn(name, local_argv(command, ports))
        self.sandbox_url = f"http://127.0.0.1:{port}"
        self.s3_url = f"http://127.0.0.1:{s3_port}"
        wait_until(lambda: http_ok(self.sandbox_url + "/_sandbox/health"), 30, "sandbox")
        wait_until(lambda: http_ok(self.s3_url + "/", any_status=True), 30, "moto S3")
        self.env.update(sandbox_settings(self.sandbox_url, self.s3_url))
        bucket = self.env.get("GEOQUEUE_S3_BUCKET", "geoqueue")
        self.object_store().ensure_bucket(bucket)

    def object_store(self):
        from config.settings import Settings
        from services.storage import ObjectStore

        keys = {k[len("GEOQUEUE_"):].lower(): v for k, v in self.env.items() if k.startswith("GEOQUEUE_")}
        return ObjectStore(Settings(**keys))

    def sandbox(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(method, self.sandbox_url + path, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()
