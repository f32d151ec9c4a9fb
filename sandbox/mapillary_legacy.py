"""Mapillary stand-in: the legacy S3 form upload (mapillary_tools up to v0.5)."""
from __future__ import annotations

import hashlib
import re
from xml.sax.saxutils import escape

from flask import Response, request
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Field, File, MultipartDecoder

LEGACY_FIELD_ORDER = ("AWSAccessKeyId", "acl", "key", "signature", "policy", "Content-Type", "file")
LEGACY_BUCKETS = ("mapillary.uploads.images", "mapillary.uploads.manual.images")
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
LEGACY_KEY = re.compile(rf"^(?P<username>[^/]+)/(?P<uuid>{UUID4})/(?P<filename>[^/]+)$")


def s3_error(status: int, code: str, message: str, **details: str) -> Response:
    extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in details.items())
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message>{extra}<RequestId>SANDBOX</RequestId></Error>")
    return Response(body, status=status, mimetype="application/xml")


class LegacyUploadRoutes:
    """POST /{bucket}: one photo per multipart form, fields in the order the uploader sends them."""

    def _legacy_upload(self, bucket: str) -> Response:
        if bucket not in LEGACY_BUCKETS:
            return s3_error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)
        mimetype, params = parse_options_header(request.headers.get("Content-Type", ""))
        if mimetype != "multipart/form-data" or "boundary" not in params:
            return s3_error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                            Condition="Bucket POST must be of the enclosure-type multipart/form-data")
        parts = _ordered_form_parts(request.get_data(), params["boundary"].encode())
        if parts is None:
            return s3_error(400, "MalformedPOSTRequest",
                            "The body of your POST request is not well-formed multipart/form-data.")
        names = [name for name, _, _ in parts]
        if names != list(LEGACY_FIELD_ORDER):
            # The first field that is missing or out of place, worded as S3 does.
            padded = names + [""] * (len(LEGACY_FIELD_ORDER) - len(names))
            wrong = next((want for got, want in zip(padded, LEGACY_FIELD_ORDER, strict=False) if got != want), "file")
            return s3_error(400, "InvalidArgument", f"Bucket POST must contain a field named '{wrong}'. "
                                                    "If it is specified, please check the order of the fields.",
                            ArgumentName=wrong, ArgumentValue="")
        form = {name: value for name, _, value in parts}
        filename = parts[-1][1]
        text = {k: form[k].decode("utf-8", "replace") for k in LEGACY_FIELD_ORDER[:-1]}
        if text["AWSAccessKeyId"] != self.options["legacy_aws_access_key_id"]:
            return s3_error(403, "InvalidAccessKeyId",
                            "The AWS Access Key Id you provided does not exist in our records.",
                            AWSAccessKeyId=text["AWSAccessKeyId"])
        username = text["key"].split("/", 1)[0]
        account = self.options["legacy_accounts"].get(username)
        if account is None or text["policy"] != account["permission_hash"]:
            return s3_error(403, "AccessDenied",
                            "Invalid according to Policy: Policy Condition failed: "
                            f'["starts-with", "$key", "{username}/"]')
        if text["signature"] != account["signature_hash"]:
            return s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                          "signature you provided. Check your key and signing method.")
        for name, wanted in (("acl", "private"), ("Content-Type", "image/jpeg")):
            if text[name] != wanted:
                return s3_error(403, "AccessDenied",
                                f'Invalid according to Policy: Policy Condition failed: ["eq", "${name}", "{wanted}"]')
        match = LEGACY_KEY.match(text["key"])
        if self.options["legacy_key_layout_check"] and (match is None or match["filename"] != filename):
            # Stricter than S3: the key must be {username}/{uuid4}/{name of the file}, as the uploader builds it.
            return s3_error(400, "InvalidArgument", "key must be {username}/{uuid}/{filename} of the uploaded file",
                            ArgumentName="key", ArgumentValue=text["key"])
        content = form["file"]
        with self.lock:
            self.legacy_objects[text["key"]] = {"size": len(content), "md5": hashlib.md5(content).hexdigest(),
                                                "is_jpeg": content.startswith(b"\xff\xd8"),
                                                "done_marker": filename == "DONE" and not content}
        self.calls.add("legacy_upload", text["key"])
        return Response(status=204)


def _ordered_form_parts(body: bytes, boundary: bytes) -> list[tuple[str, str | None, bytes]] | None:
    """The multipart parts in the order sent, as (name, filename or None, content)."""
    decoder = MultipartDecoder(boundary)
    decoder.receive_data(body)
    decoder.receive_data(None)
    parts: list[tuple[str, str | None, bytes]] = []
    try:
        while True:
            event = decoder.next_event()
            if isinstance(event, (Field, File)):
                parts.append((event.name, event.filename if isinstance(event, File) else None, b""))
            elif isinstance(event, Data) and parts:
                name, filename, content = parts[-1]
                parts[-1] = (name, filename, content + event.data)
            elif isinstance(event, Epilogue) or event is NEED_DATA:
                break
    except ValueError:
        return None
    return parts if isinstance(event, Epilogue) else None
