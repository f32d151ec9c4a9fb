"""One HTTP server for all vendor stand-ins, each under its own prefix, plus a control API.

    /immersity/...     Immersity AI      /_sandbox/counters        what each stand-in served
    /immersal/...      Immersal          /_sandbox/faults/<vendor> set fault injection (POST JSON)
    /dronemapper/...   DroneMapper       /_sandbox/config/<vendor> set vendor options (POST JSON)
    /mapillary/...     Mapillary         /_sandbox/reset           forget all state and counters
"""
from __future__ import annotations

import importlib
from collections.abc import Iterable

from flask import Flask, jsonify, request

from sandbox.serving import KeepAliveServer
from sandbox.vendor import VendorStandIn

# Each module names its stand-in class STAND_IN.
VENDOR_MODULES = ("immersity", "immersal", "dronemapper", "mapillary")


def stand_in_classes() -> list[type[VendorStandIn]]:
    classes = []
    for name in VENDOR_MODULES:
        try:
            module = importlib.import_module(f"sandbox.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"sandbox.{name}":
                raise
            continue
        classes.append(module.STAND_IN)
    return classes


def create_app(stand_ins: Iterable[VendorStandIn]) -> Flask:
    app = Flask("geoqueue-sandbox")
    vendors = {s.name: s for s in stand_ins}
    for stand_in in vendors.values():
        app.register_blueprint(stand_in.blueprint())

    @app.errorhandler(ConnectionAbortedError)
    def dropped(_exc):
        # The socket is already shut down (fault injection); nothing reaches the client.
        return "", 500

    def vendor_or_404(name: str) -> VendorStandIn:
        if name not in vendors:
            from flask import abort
            abort(404, f"no stand-in named {name!r}")
        return vendors[name]

    @app.get("/_sandbox/counters")
    def counters():
        return jsonify({name: s.calls.snapshot() for name, s in vendors.items()})

    @app.get("/_sandbox/status/<name>")
    def status(name: str):
        stand_in = vendor_or_404(name)
        return jsonify(stand_in.status() if hasattr(stand_in, "status") else {})

    @app.get("/_sandbox/journal/<name>")
    def journal(name: str):
        entries = list(vendor_or_404(name).journal)
        return jsonify([{"time": t, "method": m, "path": p, "status": s} for t, m, p, s in entries])

    @app.post("/_sandbox/faults/<name>")
    def faults(name: str):
        try:
            return jsonify(vendor_or_404(name).faults.configure(request.get_json(force=True)))
        except (ValueError, TypeError) as exc:
            return jsonify({"error": str(exc)}), 400

    @app.post("/_sandbox/config/<name>")
    def config(name: str):
        try:
            return jsonify(vendor_or_404(name).configure(request.get_json(force=True)))
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 400

    @app.post("/_sandbox/reset")
    def reset():
        for stand_in in vendors.values():
            stand_in.reset()
        return jsonify({"reset": sorted(vendors)})

    @app.get("/_sandbox/health")
    def health():
        return jsonify({"ok": True, "vendors": sorted(vendors)})

    return app


class SandboxServer(KeepAliveServer):
    """The stand-ins served on loopback."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stand_ins = [cls() for cls in stand_in_classes()]
        self.app = create_app(self.stand_ins)
        super().__init__(self.app, host, port, "sandbox")
        for stand_in in self.stand_ins:
            stand_in.public_url = self.url
