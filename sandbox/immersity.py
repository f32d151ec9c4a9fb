"""Immersity AI stand-in: OAuth2 client credentials, /api/v1/disparity, /api/v1/animation, /api/v1/prices.

Faithful to the vendor's contract: calls block until the artifact is PUT to the presigned URL,
every accepted call costs credits, errors are 400 / 401 / 402 in the vendor's (NestJS) shape.
The artifact is PUT through exactly the URL received, so the S3 stand-in (sandbox.s3) judges it
as S3 would: a refused write is a 400 naming resultPresignedUrl and S3's error, and costs nothing.

Where the documents are silent, the stand-in decides (and says so): the answer to a refused write
(above); a call without resultPresignedUrl keeps the artifact here (/storage/<key>) as the vendor's
own storage would; `success_status` plays the OpenAPI's 200 or the vendor sample's 201.
"""
from __future__ import annotations

import contextlib
import html
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Blueprint, Response, jsonify, request

from sandbox import imaging
from sandbox.vendor import VendorStandIn

TOKEN_PATH = "/auth/realms/immersity/protocol/openid-connect/token"
ANIMATION_TYPES = ("mp4", "gif")
INPUT_TYPES = ("image2d", "image360")
BIT_DEPTHS = ("uint8", "uint16")


def _error(status: int, message: Any, error: str) -> Response:
    response = jsonify({"statusCode": status, "message": message, "error": error})
    response.status_code = status
    return response


def _refusal(response: requests.Response) -> str:
    """HTTP status and, from an S3-style XML error, its Code and Message."""
    text = f"HTTP {response.status_code}"
    code = re.search(r"<Code>([^<]*)</Code>", response.text or "")
    message = re.search(r"<Message>([^<]*)</Message>", response.text or "")
    if code:
        text += f" {code.group(1)}" + (f": {html.unescape(message.group(1))}" if message else "")
    return text


def object_path(url: str) -> str:
    """The URL without host and query: for a presigned S3 URL, /bucket/key."""
    return urlsplit(url).path


class ImmersityStandIn(VendorStandIn):
    name = "immersity"

    def default_options(self) -> dict[str, Any]:
        return {
            "clients": {"sandbox-client": "sandbox-secret"},
            "credits": 1_000_000,             # balance of every client
            "token_lifetime_s": 300,
            "prices": {"disparity": {"mono": 10}, "animation": {"gif": 10, "mp4": 10}},
            "success_status": 200,            # the OpenAPI says 200; the vendor's sample checks 201
            "processing_delay_s": 0.0,        # extra time a call blocks, as the real service does
        }

    def reset_state(self) -> None:
        self.tokens: dict[str, tuple[str, float]] = {}
        self.spent: dict[str, int] = {}
        self.stored: dict[str, bytes] = {}
        self.in_flight = self.peak_in_flight = 0

    def __init__(self, public_url: str = "") -> None:
        super().__init__(public_url)
        self.reset_state()

    def configure(self, values: dict[str, Any]) -> dict[str, Any]:
        # A one-off action rather than an option: make every token issued so far invalid.
        if values.pop("expire_issued_tokens", False):
            with self.lock:
                self.tokens = {token: (client, 0.0) for token, (client, _) in self.tokens.items()}
        return super().configure(values)

    # --- auth ---
    def _issue_token(self) -> Response:
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return self._oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if self.options["clients"].get(client_id) != client_secret or not client_secret:
            return self._oauth_error(401, "unauthorized_client", "Invalid client or Invalid client credentials")
        token = secrets.token_urlsafe(32)
        lifetime = int(self.options["token_lifetime_s"])
        with self.lock:
            self.tokens[token] = (client_id, time.time() + lifetime)
        self.calls.add("token")
        return jsonify({
            "access_token": token, "expires_in": lifetime, "refresh_expires_in": 0,
            "token_type": "Bearer", "not-before-policy": 0, "scope": "profile email",
        })

    @staticmethod
    def _oauth_error(status: int, error: str, description: str) -> Response:
        response = jsonify({"error": error, "error_description": description})
        response.status_code = status
        return response

    def _client(self) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        with self.lock:
            client, expires = self.tokens.get(header[len("Bearer "):], ("", 0.0))
        return client if client and expires > time.time() else None

    # --- credits ---
    def _price(self, operation: str, variant: str) -> int:
        return int(self.options["prices"].get(operation, {}).get(variant, 10))

    def _can_pay(self, client: str, price: int) -> bool:
        with self.lock:
            return self.spent.get(client, 0) + price <= int(self.options["credits"])

    def _charge(self, client: str, price: int) -> None:
        with self.lock:
            self.spent[client] = self.spent.get(client, 0) + price

    # --- storage helpers ---
    def _fetch(self, url: str, field: str) -> bytes:
        if url.startswith(self.public_url + "/immersity/storage/"):
            key = url.rsplit("/", 1)[-1]
            with self.lock:
                if key in self.stored:
                    return self.stored[key]
        response = requests.get(url, timeout=60)
        if response.status_code != 200:
            raise ValueError(f"{field} could not be downloaded ({_refusal(response)})")
        return response.content

    def _deliver(self, url: str | None, body: bytes, content_type: str) -> str:
        """PUT the artifact to the caller's presigned URL, or keep it here and hand out a URL."""
        if url:
            # The exact URL received, as the vendor writes to it ("Pre-Signed URLs": "must have HTTP
            # PUT permissions embedded"); no Content-Type the caller did not sign.
            response = requests.put(url, data=body, timeout=60)
            if response.status_code not in (200, 201, 204):
                raise ValueError(f"resultPresignedUrl rejected the upload ({_refusal(response)})")
            return url
        key = uuid.uuid4().hex
        with self.lock:
            self.stored[key] = body
        return f"{self.public_url}/immersity/storage/{key}"

    # --- validation ---
    @staticmethod
    def _validate(body: dict, required: tuple[str, ...], rules: dict[str, Any]) -> list[str]:
        problems = [f"{name} should not be empty" for name in required if not body.get(name)]
        for name, rule in rules.items():
            if name not in body:
                continue
            value = body[name]
            if isinstance(rule, tuple) and value not in rule:
                problems.append(f"{name} must be one of the following values: {', '.join(map(str, rule))}")
            elif isinstance(rule, list):  # [low, high]
                low, high = rule
                if not isinstance(value, (int, float)) or not low <= value <= high:
                    problems.append(f"{name} must not be less than {low} and not greater than {high}")
        for name in ("inputImageUrl", "inputDisparityUrl", "resultPresignedUrl"):
            if name in body and not str(body[name]).startswith(("http://", "https://")):
                problems.append(f"{name} must be a URL address")
        return problems

    def _operation(self, operation: str) -> Response:
        client = self._client()
        if client is None:
            self.calls.add("unauthorized")
            return _error(401, "Unauthorized", "Unauthorized")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, ["body must be a JSON object"], "Bad Request")
        if operation == "disparity":
            problems = self._validate(body, ("inputImageUrl",), {
                "inputType": INPUT_TYPES, "outputBitDepth": BIT_DEPTHS, "dilation": [-0.01, 0.01]})
            variant = "mono"
        else:
            problems = self._validate(body, ("inputImageUrl", "inputDisparityUrl"), {
                "animationType": ANIMATION_TYPES, "animationLength": [1, 10], "amplitudeX": [0, 10],
                "amplitudeY": [0, 10], "amplitudeZ": [0, 10], "numberOfLoops": [0, 10]})
            variant = body.get("animationType", "mp4")
        if problems:
            return _error(400, problems, "Bad Request")
        price = self._price(operation, variant)
        if not self._can_pay(client, price):
            self.calls.add("payment_required")
            return _error(402, "Not enough credit balance", "Payment Required")
        correlation_id = body.get("correlationId") or str(uuid.uuid4())
        try:
            rgb = imaging.decode_image(self._fetch(body["inputImageUrl"], "inputImageUrl"))
            if operation == "disparity":
                artifact = imaging.disparity_map(rgb, body.get("outputBitDepth", "uint8"),
                                                 float(body.get("dilation", 0.0063)))
                content_type = "image/png"
            else:
                disparity = self._fetch(body["inputDisparityUrl"], "inputDisparityUrl")
                artifact = imaging.animation(rgb, disparity, kind=variant, length=int(body.get("animationLength", 4)),
                                             amplitude=float(body.get("amplitudeX", 1)))
                content_type = "image/gif" if variant == "gif" else "video/mp4"
        except imaging.NotAnImage:
            return _error(400, "inputImageUrl does not point to a supported image", "Bad Request")
        except (ValueError, requests.RequestException) as exc:
            return _error(400, str(exc), "Bad Request")
        if self.options["processing_delay_s"]:
            with self._working():
                time.sleep(float(self.options["processing_delay_s"]))
        try:
            result_url = self._deliver(body.get("resultPresignedUrl"), artifact, content_type)
        except (ValueError, requests.RequestException) as exc:
            # The documents do not say how the vendor answers when the PUT is refused; the OpenAPI's
            # 400 (invalid parameters) in its NestJS shape, naming resultPresignedUrl, and no charge.
            return _error(400, str(exc), "Bad Request")
        self._charge(client, price)
        target = body.get("resultPresignedUrl")
        self.calls.add(operation, object_path(target) if target else correlation_id)
        response = jsonify({"correlationId": correlation_id, "resultPresignedUrl": result_url})
        response.status_code = int(self.options["success_status"])
        return response

    def _prices(self) -> Response:
        if self._client() is None:
            return _error(401, "Unauthorized", "Unauthorized")
        return jsonify(self.options["prices"])

    def _stored(self, key: str) -> Response:
        with self.lock:
            body = self.stored.get(key)
        if body is None:
            return _error(404, "Not Found", "Not Found")
        return Response(body, mimetype="application/octet-stream")

    def register(self, bp: Blueprint) -> None:
        bp.add_url_rule(TOKEN_PATH, "token", self._issue_token, methods=["POST"])
        bp.add_url_rule("/api/v1/disparity", "disparity", lambda: self._operation("disparity"), methods=["POST"])
        bp.add_url_rule("/api/v1/animation", "animation", lambda: self._operation("animation"), methods=["POST"])
        bp.add_url_rule("/api/v1/prices", "prices", self._prices, methods=["GET"])
        bp.add_url_rule("/storage/<key>", "storage", self._stored, methods=["GET"])

    @contextlib.contextmanager
    def _working(self):
        """A call the vendor is working on: counted, so a benchmark can see how many run at once."""
        with self.lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= 1

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {"spent": dict(self.spent), "tokens_issued": list(self.tokens), "in_flight": self.in_flight,
                    "peak_in_flight": self.peak_in_flight}


STAND_IN = ImmersityStandIn
