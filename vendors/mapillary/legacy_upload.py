"""Uploads by the legacy S3 form POST: one image per POST under {username}/{uuid}/{filename},
a sequence finished by the empty DONE object."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from vendors.mapillary.connection import MapillaryConnection
from vendors.mapillary.errors import legacy_error_from_response
from vendors.mapillary.upload_sources import Source, open_source

LEGACY_AWS_ACCESS_KEY_ID = "AKIAI2X3BJAT2W75HILA"   # the documented fixed value, not a secret


@dataclass(frozen=True, repr=False)
class LegacyUploadCredentials:
    """The account's "upload from script" values; from configuration, never from code."""
    username: str
    permission_hash: str
    signature_hash: str
    aws_access_key_id: str = LEGACY_AWS_ACCESS_KEY_ID

    def __repr__(self) -> str:  # keep the hashes out of logs and tracebacks
        return f"LegacyUploadCredentials(username={self.username!r}, hashes=<hidden>)"


class LegacyUploads(MapillaryConnection):
    """Uploads by the legacy S3 form POST."""

    def legacy_upload(self, source: Source, filename: str, credentials: LegacyUploadCredentials,
                      sequence_uuid: str | uuid.UUID) -> str:
        """POST one image (or the empty DONE marker) with the fields in the documented order;
        returns its key {username}/{uuid}/{filename}. Success is HTTP 204. A second POST of the same
        key replaces the object, so a failed try is simply made again."""
        key = f"{credentials.username}/{uuid.UUID(str(sequence_uuid))}/{filename}"
        with open_source(source) as (stream, _):
            def once() -> str:
                stream.seek(0)
                fields = [  # a list, not a dict: the order is part of the contract
                    ("AWSAccessKeyId", (None, credentials.aws_access_key_id)),
                    ("acl", (None, "private")),
                    ("key", (None, key)),
                    ("signature", (None, credentials.signature_hash)),
                    ("policy", (None, credentials.permission_hash)),
                    ("Content-Type", (None, "image/jpeg")),
                    ("file", (filename, stream, "image/jpeg")),
                ]
                response = self._send("POST", self.legacy_upload_url, files=fields)
                if response.status_code != 204:
                    raise legacy_error_from_response(response)
                return key

            return self.retries.run(once)

    def legacy_finish_sequence(self, credentials: LegacyUploadCredentials, sequence_uuid: str | uuid.UUID) -> str:
        """Mark a legacy sequence complete by uploading the empty DONE object."""
        return self.legacy_upload(b"", "DONE", credentials, sequence_uuid)
