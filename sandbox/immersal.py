"""Immersal stand-in: accounts, workspaces (image banks), map construction, download, localization, ECEF.

Faithful to the vendor's contract (docs/vendors/immersal.md):
every call is a POST whose JSON body carries the token; binary variants send JSON + NUL + image;
the answer is always HTTP 200 with `"error": "none"` or the vendor's error string ("auth", "job",
"not found", "map count", "name"). Missing fields read as 0 / false / "" as a C server would.

Where the vendor documents nothing, the stand-in decides (and says so here):
- a full workspace answers "image limit" (the vendor's string for it is unknown);
- a bank outside 0..bankMax-1 answers "query" (the vendor's "DB error or no results");
- /metadataget and /privacy answer "not found" for a map the token cannot see;
- an image is "with GPS" when latitude or longitude is non-zero (the samples send 0.0 for none);
- a map is localizable from "sparse" on; /fuse takes 2..32 ids of "done" maps, as /align does;
- /geolist returns the account's maps and public ones; /restore without "clear" adds to the workspace.
Tokens: /login hands out the account's developer token, as the vendor's does. The control API's
{"revoke_tokens": true | [logins]} regenerates it, as the vendor's portal does: the old token
then answers "auth" (counted as auth_refused) and /login gives the new one.
Map status is computed from elapsed time: pending for the first 10% of `construct_seconds`,
processing until 60%, then sparse (or failed), done at 100%.

This module holds the stand-in's options and routing; its parts live beside it, one concern each:
immersal_accounts (who is calling, /login), immersal_workspaces (image banks, /capture),
immersal_maps (/construct, /fuse, reading maps back), immersal_localize, immersal_records (map
lookups and the /list and /metadataget records), immersal_state (stored images and maps),
immersal_geometry (ECEF, quaternions, distances), immersal_api (request and answer helpers).
"""
from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from sandbox.immersal_accounts import AccountRoutes
from sandbox.immersal_api import _answer
from sandbox.immersal_localize import LocalizeRoutes
from sandbox.immersal_maps import MapRoutes
from sandbox.immersal_records import MapRecords
from sandbox.immersal_state import StoredImage, StoredMap
from sandbox.immersal_workspaces import WorkspaceRoutes
from sandbox.vendor import VendorStandIn

DEFAULT_LOGIN = "sandbox@example.com"
DEFAULT_PASSWORD = "sandbox-password"
DEFAULT_TOKEN = "5a4d1e7c3b2f9a8e6d0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e"
FIRST_MAP_ID = 1001


class ImmersalStandIn(AccountRoutes, WorkspaceRoutes, MapRoutes, LocalizeRoutes, MapRecords, VendorStandIn):
    name = "immersal"

    def default_options(self) -> dict[str, Any]:
        return {
            "accounts": {DEFAULT_LOGIN: {"password": DEFAULT_PASSWORD, "token": DEFAULT_TOKEN}},
            "image_max": 250,            # imageMax of every workspace
            "bank_max": 1,               # workspaces (image banks) per account
            "construct_seconds": 2.0,    # from /construct or /fuse to "done"
            "fail_constructions": False,  # every new map ends "failed"
            "status_case": "lower",      # "lower" as the SDK, "capitalized" as the vendor's docstrings
        }

    def __init__(self, public_url: str = "") -> None:
        super().__init__(public_url)
        self.reset_state()

    def configure(self, values: dict[str, Any]) -> dict[str, Any]:
        # A one-off action rather than an option, as regenerating the token in the vendor's portal is:
        # {"revoke_tokens": true} (every account) or ["login", ...]. The old token then answers "auth"
        # and /login hands out the new one.
        revoke = values.pop("revoke_tokens", None)
        options = super().configure(values)
        if revoke:
            with self.lock:
                accounts = self.options["accounts"]
                logins = list(accounts) if revoke is True else [revoke] if isinstance(revoke, str) else list(revoke)
                unknown = [login for login in logins if login not in accounts]
                if unknown:
                    raise ValueError(f"no immersal account(s) {', '.join(map(str, unknown))} to revoke")
                for login in logins:
                    accounts[login] = {**accounts[login], "token": secrets.token_hex(32)}
                    self.calls.add("token_revoked", login)
                options = dict(self.options)
        return options

    def reset_state(self) -> None:
        self.workspaces: dict[tuple[str, int], dict[tuple[int, int], StoredImage]] = {}
        self.maps: dict[int, StoredMap] = {}
        self.next_map_id = FIRST_MAP_ID

    # --- routing ---
    def register(self, bp: Blueprint) -> None:
        # endpoint: (handler, who may call: "none" | "account" | "anyone", binary body)
        routes: dict[str, tuple[Callable, str, bool]] = {
            "login": (self.on_login, "none", False),
            "status": (self.on_status, "account", False),
            "clear": (self.on_clear, "account", False),
            "restore": (self.on_restore, "account", False),
            "list": (self.on_list, "account", False),
            "geolist": (self.on_geolist, "account", False),
            "captureb64": (self.on_capture, "account", False),
            "capture": (self.on_capture, "account", True),
            "construct": (self.on_construct, "account", False),
            "fuse": (self.on_fuse, "account", False),
            "privacy": (self.on_privacy, "account", False),
            "mapb64": (self.on_mapb64, "anyone", False),
            "ecef": (self.on_ecef, "anyone", False),
            "metadataget": (self.on_metadataget, "anyone", False),
            "localizeb64": (self.on_localize, "anyone", False),
            "localize": (self.on_localize, "anyone", True),
        }
        for endpoint, (handler, caller, binary) in routes.items():
            bp.add_url_rule(f"/{endpoint}", endpoint, self._route(endpoint, handler, caller, binary),
                            methods=["POST"])

    def _route(self, endpoint: str, handler: Callable, caller: str, binary: bool) -> Callable[[], Response]:
        takes_image = endpoint in ("capture", "captureb64", "localize", "localizeb64")

        def serve() -> Response:
            self.calls.add(f"/{endpoint}")
            raw = request.get_data()
            head, _, payload = raw.partition(b"\0") if binary else (raw, b"", b"")
            try:
                body = json.loads(head.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                body = {}
            if not isinstance(body, dict):
                body = {}
            if takes_image and not binary:
                try:
                    payload = base64.b64decode(str(body.get("b64", "")), validate=True)
                except ValueError:
                    payload = b""
            args: list[Any] = [body]
            with self.lock:
                if caller != "none":
                    login = self._login_of(body.get("token"))
                    if login is None and (caller == "account" or body.get("token")):
                        self.calls.add("auth_refused", f"/{endpoint}")
                        # /mapb64 and /ecef document one answer for a bad token and a bad map id.
                        return _answer("not found" if endpoint in ("mapb64", "ecef") else "auth")
                    args.append(login)
                if takes_image:
                    args.append(payload)
                return handler(*args)

        return serve

    def status(self) -> dict[str, Any]:
        """For /_sandbox/status/immersal: workspace sizes and map states."""
        with self.lock:
            return {
                "workspaces": {f"{login}:{bank}": len(images) for (login, bank), images in self.workspaces.items()},
                "maps": {str(m.id): {"status": self._status(m), "name": m.name, "options": m.options}
                         for m in self.maps.values()},
            }


STAND_IN = ImmersalStandIn
