"""Mapillary client: Graph API v4 reads, coverage vector tiles, CDN downloads and uploads
(the current offset-resumable protocol and the legacy S3 form POST). Plain HTTP; no Celery.

The three hosts are separate base URLs so the sandbox and the real service are interchangeable:
graph (graph.mapillary.com), tiles (tiles.mapillary.com) and upload (rupload.facebook.com).
Every error becomes a typed error once, in `error_from_response`, so the task layer can decide
about retries from the type alone. What it relies on is in docs/vendors/mapillary.md.

Modules: errors (typed errors), tiles (tile maths, vector tile decoding), connection (hosts, token,
one retried call), graph (metadata and search), coverage (tiles over HTTP), downloads (CDN),
upload_sources (bytes to upload), resumable_upload, legacy_upload, and client (MapillaryClient, all of them).
"""
