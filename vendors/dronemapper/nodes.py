"""The processing nodes and the task options they accept."""
from __future__ import annotations

from vendors.dronemapper.connection import DroneMapperConnection


class ProcessingNodes(DroneMapperConnection):
    """The /api/processingnodes/ routes."""

    def processing_nodes(self) -> list[dict]:
        return self._json("GET", "/api/processingnodes/")

    def available_options(self) -> list[dict]:
        """The options every online node accepts: [{name, type, value, domain, help}]."""
        return self._json("GET", "/api/processingnodes/options/")
