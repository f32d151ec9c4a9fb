"""Every job a producer may submit, with its parameters: `CATALOG["immersity.batch"].check(params)`."""
from __future__ import annotations

from geoqueue.catalog import dronemapper, immersal, immersity, mapillary
from geoqueue.params import Catalog

CATALOG = Catalog()
for _vendor in (immersity, immersal, dronemapper, mapillary):
    CATALOG.add(*_vendor.JOBS)
