"""The S3 stand-in: moto's S3 server behind a layer that checks presigned URLs as S3 does.

moto's server takes any presigned request: a URL presigned for GET used to PUT, an expired URL,
a forged signature (docs/s3.md#moto). Real S3 refuses each with 403, so a
presigning bug would pass every test. This layer recomputes what S3 recomputes, with botocore's
own signers, before moto sees the request:

- SigV4 query auth (X-Amz-Signature): the access key, X-Amz-Expires (at most 7 days), expiry
  against X-Amz-Date, and the signature over method, path, query and the signed headers
  (the method is signed, so a GET URL used to PUT does not match);
- SigV2 query auth (AWSAccessKeyId, Expires, Signature), which botocore still makes in us-east-1
  when no signature version is set: the access key, Expires, and the signature.

Refusals are S3's XML errors: 403 AccessDenied ("Request has expired"), 403
SignatureDoesNotMatch, 403 InvalidAccessKeyId, 400 AuthorizationQueryParametersError.

Departs from S3 on purpose: requests signed in the Authorization header (the fleet's own boto3
calls) and anonymous ones go to moto unchecked. Checking them is not what this stand-in is for,
and boto3's streaming uploads sign chunk by chunk (aws-chunked), which moto does not check either.
"""
from __future__ import annotations

import argparse
import hmac
import json
import signal
import sys
import threading
import time
from calendar import timegm
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

from botocore.auth import HmacV1QueryAuth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest, HeadersDict
from botocore.credentials import Credentials

from sandbox.serving import KeepAliveServer, WSGIApp

SANDBOX_CREDENTIALS = {"sandbox-access-key": "sandbox-secret-key"}
MAX_EXPIRES_S = 7 * 24 * 3600  # SigV4's limit
REQUESTS_PATH = "/_sandbox/requests"   # not S3's: what the stand-in was asked, by method and object
SIGV4_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders")


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, **details: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def body(self) -> bytes:
        extra = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in self.details.items())
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
                f"<Message>{escape(self.message)}</Message>{extra}<RequestId>SANDBOX</RequestId></Error>").encode()


class PresignedUrlCheck:
    """WSGI middleware: presigned requests that S3 would refuse are answered here; the rest go on."""

    def __init__(self, app: WSGIApp, credentials: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.credentials = dict(credentials or SANDBOX_CREDENTIALS)
        self.clock = clock
        self.refused: dict[str, int] = {}   # S3 error code -> count, for whoever wants to look
        self.requests: dict[str, int] = {}  # "METHOD /bucket/key" -> count, for tests that count S3's work
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        raw_path, _, raw_query = _raw_target(environ)
        if raw_path == REQUESTS_PATH:
            return self._tally(start_response)
        with self._lock:
            seen = f"{environ['REQUEST_METHOD']} {unquote(raw_path)}"
            self.requests[seen] = self.requests.get(seen, 0) + 1
        query = parse_qsl(raw_query, keep_blank_values=True)
        names = {name for name, _ in query}
        try:
            if "X-Amz-Signature" in names or "X-Amz-Algorithm" in names:
                self._check_sigv4(environ, raw_path, query)
            elif "Signature" in names and "AWSAccessKeyId" in names:
                self._check_sigv2(environ, raw_path, raw_query, query)
        except Refused as refusal:
            with self._lock:
                self.refused[refusal.code] = self.refused.get(refusal.code, 0) + 1
            _drain(environ)
            body = refusal.body()
            start_response(f"{refusal.status} {'Forbidden' if refusal.status == 403 else 'Bad Request'}",
                           [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)

    def _tally(self, start_response: Callable) -> Iterable[bytes]:
        with self._lock:
            body = json.dumps(self.requests).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    # --- SigV4 ---
    def _check_sigv4(self, environ: dict, raw_path: str, query: list[tuple[str, str]]) -> None:
        params = dict(query)
        missing = [name for name in (*SIGV4_PARAMS, "X-Amz-Signature") if not params.get(name)]
        if missing:
            raise Refused(400, "AuthorizationQueryParametersError",
                          f"Query-string authentication version 4 requires the {', '.join(missing)} parameters.")
        if params["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
            raise Refused(400, "AuthorizationQueryParametersError",
                          "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
        scope = params["X-Amz-Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise Refused(400, "AuthorizationQueryParametersError",
                          "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; "
                          "expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
        access_key, day, region, service, _ = scope
        secret = self._secret(access_key)
        stamp = params["X-Amz-Date"]
        try:
            signed_at = timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
            expires = int(params["X-Amz-Expires"])
        except ValueError:
            raise Refused(400, "AuthorizationQueryParametersError",
                          "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\" and "
                          "X-Amz-Expires a whole number of seconds") from None
        if not 0 < expires <= MAX_EXPIRES_S:
            raise Refused(400, "AuthorizationQueryParametersError",
                          "X-Amz-Expires must be less than a week (in seconds) that is 604800")
        now = self.clock()
        if now > signed_at + expires:
            raise Refused(403, "AccessDenied", "Request has expired", **{
                "X-Amz-Expires": str(expires), "Expires": _iso(signed_at + expires), "ServerTime": _iso(now)})

        # What the client signed, rebuilt from the request as received: botocore's own S3 presigner
        # computes the canonical request and the signature from it.
        signed_names = params["X-Amz-SignedHeaders"].split(";")
        headers = {name: _header(environ, name) for name in signed_names}
        headers = {name: value for name, value in headers.items() if value is not None}
        host = _header(environ, "host") or ""
        request = AWSRequest(method=environ["REQUEST_METHOD"],
                             url=f"http://{host}{_canonical_path(raw_path)}", headers=headers,
                             params=[(k, v) for k, v in query if k != "X-Amz-Signature"])
        request.context["timestamp"] = stamp
        signer = S3SigV4QueryAuth(Credentials(access_key, secret), service, region, expires=expires)
        canonical = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical)
        expected = signer.signature(string_to_sign, request)
        if day != stamp[:8] or not hmac.compare_digest(expected, params["X-Amz-Signature"]):
            raise Refused(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature you provided. "
                          "Check your key and signing method.",
                          AWSAccessKeyId=access_key, StringToSign=string_to_sign,
                          SignatureProvided=params["X-Amz-Signature"], CanonicalRequest=canonical)

    # --- SigV2 ---
    def _check_sigv2(self, environ: dict, raw_path: str, raw_query: str, query: list[tuple[str, str]]) -> None:
        params = dict(query)
        access_key = params["AWSAccessKeyId"]
        secret = self._secret(access_key)
        try:
            expires_at = int(params.get("Expires", ""))
        except ValueError:
            raise Refused(403, "AccessDenied", "Query-string authentication requires the Signature, "
                                               "Expires and AWSAccessKeyId parameters") from None
        now = self.clock()
        if now > expires_at:
            raise Refused(403, "AccessDenied", "Request has expired",
                          Expires=_iso(expires_at), ServerTime=_iso(now))
        headers = {name: value for name in ("content-md5", "content-type")
                   if (value := _header(environ, name)) is not None}
        headers.update({k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                        if k.startswith("HTTP_X_AMZ_")})
        signer = _SigV2At(Credentials(access_key, secret), expires_at)
        split = urlsplit(f"http://host{raw_path}?{raw_query}")
        expected = signer.get_signature(environ["REQUEST_METHOD"], split, HeadersDict(headers))
        if not hmac.compare_digest(expected, params["Signature"]):
            raise Refused(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature you provided. "
                          "Check your key and signing method.",
                          AWSAccessKeyId=access_key, SignatureProvided=params["Signature"])

    def _secret(self, access_key: str) -> str:
        secret = self.credentials.get(access_key)
        if secret is None:
            raise Refused(403, "InvalidAccessKeyId",
                          "The AWS Access Key Id you provided does not exist in our records.",
                          AWSAccessKeyId=access_key)
        return secret


class S3StandIn(KeepAliveServer):
    """moto's S3 server (its WSGI app) behind PresignedUrlCheck."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, credentials: dict[str, str] | None = None) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.check = PresignedUrlCheck(DomainDispatcherApplication(create_backend_app), credentials)
        super().__init__(self.check, host, port, "s3")


# --- helpers ---

class _SigV2At(HmacV1QueryAuth):
    """botocore's SigV2 query signer, its Expires the URL's own rather than now + a lifetime."""

    def __init__(self, credentials: Credentials, expires_at: int) -> None:
        super().__init__(credentials)
        self._expires_at = expires_at

    def _get_date(self) -> str:
        return str(self._expires_at)


def _raw_target(environ: dict) -> tuple[str, str, str]:
    """The path and query as the client sent them (werkzeug's PATH_INFO is already decoded)."""
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not target:
        target = quote(environ.get("PATH_INFO", "/"), safe="/~") + (
            "?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
    if "://" in target:  # an absolute-form request target
        target = target.split("://", 1)[1]
        target = target[target.find("/"):] if "/" in target else "/"
    path, sep, query = target.partition("?")
    return path, sep, query


def _canonical_path(raw_path: str) -> str:
    """S3's canonical URI: the path, each byte outside A-Z a-z 0-9 - _ . ~ / encoded once."""
    return quote(unquote(raw_path), safe="/~")


def _header(environ: dict, name: str) -> str | None:
    lowered = name.lower()
    if lowered == "content-type":
        return environ.get("CONTENT_TYPE") or None
    if lowered == "content-length":
        return environ.get("CONTENT_LENGTH") or None
    return environ.get("HTTP_" + lowered.upper().replace("-", "_"))


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _drain(environ: dict) -> None:
    """Read the refused request's body, so the client reads our answer instead of a reset."""
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH")
    if stream is None or not (length or environ.get("wsgi.input_terminated")):
        return  # no body announced: reading would wait for one
    try:
        remaining = int(length) if length else None
        while remaining is None or remaining > 0:
            chunk = stream.read(65536 if remaining is None else min(65536, remaining))
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> None:
    """python -m sandbox.s3 --port 8901: moto's S3 checking presigned URLs as S3 does."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.s3", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8901, help="0: any free port")
    parser.add_argument("--credentials", default=None, metavar="KEY:SECRET[,KEY:SECRET]",
                        help="access keys presigned URLs may be signed with "
                             "(default: sandbox-access-key:sandbox-secret-key)")
    args = parser.parse_args(argv)
    credentials = None
    if args.credentials:
        credentials = dict(pair.split(":", 1) for pair in args.credentials.split(",") if pair)
    server = S3StandIn(args.host, args.port, credentials)
    print(f"s3 {server.url}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
