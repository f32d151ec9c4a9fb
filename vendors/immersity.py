"""Immersity AI: disparity maps and animations written to presigned PUT URLs.

Calls block until the artifact is written (up to minutes) and every accepted call costs
credits; the API has no idempotency key, so this client never repeats a POST by itself.
The options a call passes on are the catalog's (geoqueue.catalog.immersity), checked at submit.
"""
from __future__ import annotations

import uuid
from typing import Any

from vendors.errors import AuthError, InputError, PaymentRequired, VendorError
from vendors.http import Retries, new_session, send
from vendors.tokens import MemoryTokenStore, TokenStore, renewal_ttl

VENDOR = "immersity"
def vendor_message(body: Any) -> str:
    """The vendor's words from a NestJS or OAuth error body."""
    if isinstance(body, dict):
        message = body.get("message") or body.get("error_description") or body.get("error")
        if isinstance(message, list):
            return "; ".join(map(str, message))
        if message:
            return str(message)
    return str(body)[:300]


class ImmersityClient:
    def __init__(self, api_url: str, token_url: str, client_id: str, client_secret: str,
                 token_store: TokenStore | None = None, timeout: float = 300.0, retries: Retries = Retries()) -> None:
        self.api_url = api_url.rstrip("/")
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self.tokens = token_store or MemoryTokenStore()
        self.timeout = timeout
        self.retries = retries
        self.session = new_session()

    # --- auth ---
    def _fetch_token(self) -> str:
        return self.retries.run(self._fetch_token_once)

    def _fetch_token_once(self) -> str:
        response = send(self.session, "POST", self.token_url, vendor=VENDOR, timeout=30, data={
            "grant_type": "client_credentials", "client_id": self._client_id, "client_secret": self._client_secret})
        if response.status_code != 200:
            raise AuthError("Immersity refused the client credentials", vendor=VENDOR,
                            status=response.status_code, vendor_message=vendor_message(_json(response)))
        body = response.json()
        self.tokens.put("access", body["access_token"], renewal_ttl(float(body.get("expires_in", 300))))
        return body["access_token"]

    def _token(self) -> str:
        return self.tokens.get("access") or self._fetch_token()

    def _call(self, method: str, path: str, json_body: dict | None = None, timeout: float | None = None) -> dict:
        """One call, retried where it failed; a POST (every one costs credits) only when the vendor
        answered 429 or 5xx, never after a timeout or a dropped connection."""
        return self.retries.run(lambda: self._call_once(method, path, json_body, timeout), idempotent=method == "GET")

    def _call_once(self, method: str, path: str, json_body: dict | None, timeout: float | None) -> dict:
        """One try; on 401 the token is renewed once and the call made again (it was not accepted)."""
        for attempt in (1, 2):
            response = send(self.session, method, self.api_url + path, vendor=VENDOR,
                            timeout=timeout or self.timeout, json=json_body,
                            headers={"Authorization": f"Bearer {self._token()}"})
            if response.status_code == 401 and attempt == 1:
                self.tokens.drop("access")
                continue
            return self._result(response)
        raise AssertionError("unreachable")

    @staticmethod
    def _result(response) -> dict:
        if 200 <= response.status_code < 300:  # the spec says 200, the vendor's sample checks 201
            return _json(response) or {}
        message = vendor_message(_json(response))
        status = response.status_code
        if status == 401:
            raise AuthError("Immersity did not accept a fresh token", vendor=VENDOR, status=status,
                            vendor_message=message)
        if status == 402:
            raise PaymentRequired("not enough credits", vendor=VENDOR, status=status, vendor_message=message)
        if status in (400, 404, 413, 415, 422):
            raise InputError(f"Immersity rejected the request: {message}", vendor=VENDOR, status=status,
                             vendor_message=message)
        raise VendorError(f"Immersity answered HTTP {status}", vendor=VENDOR, status=status, vendor_message=message)

    # --- operations ---
    def disparity(self, input_image_url: str, result_url: str, correlation_id: str | None = None,
                  **options: Any) -> dict:
        return self._call("POST", "/api/v1/disparity", {
            "correlationId": correlation_id or str(uuid.uuid4()),
            "inputImageUrl": input_image_url, "resultPresignedUrl": result_url, **options})

    def animation(self, input_image_url: str, input_disparity_url: str, result_url: str,
                  correlation_id: str | None = None, **options: Any) -> dict:
        return self._call("POST", "/api/v1/animation", {
            "correlationId": correlation_id or str(uuid.uuid4()), "inputImageUrl": input_image_url,
            "inputDisparityUrl": input_disparity_url, "resultPresignedUrl": result_url, **options})

    def prices(self) -> dict:
        return self._call("GET", "/api/v1/prices", timeout=30)


def _json(response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
