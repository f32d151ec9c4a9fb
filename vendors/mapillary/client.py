"""MapillaryClient: the Graph reads, coverage, downloads and both upload protocols over one connection."""
from __future__ import annotations

from typing import Any

from vendors.mapillary.connection import GRAPH_URL, TILES_URL, UPLOAD_URL
from vendors.mapillary.coverage import CoverageReads
from vendors.mapillary.downloads import ImageDownloads
from vendors.mapillary.graph import GraphReads
from vendors.mapillary.legacy_upload import LegacyUploads
from vendors.mapillary.resumable_upload import ResumableUploads


class MapillaryClient(ImageDownloads, GraphReads, CoverageReads, ResumableUploads, LegacyUploads):
    """One small class over Mapillary's three hosts. Methods raise MapillaryError subclasses
    (which are also the shared AuthError / InputError / NotFound / TransientError / RateLimited)."""

    @classmethod
    def production(cls, access_token: str, **kwargs: Any) -> MapillaryClient:
        return cls(GRAPH_URL, TILES_URL, UPLOAD_URL, access_token, **kwargs)

    def __repr__(self) -> str:
        return f"MapillaryClient(graph_url={self.graph_url!r})"
