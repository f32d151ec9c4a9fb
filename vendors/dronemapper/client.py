"""DroneMapperClient: projects, task uploads, tasks, assets, tiles and processing nodes over one connection."""
from __future__ import annotations

from vendors.dronemapper.downloads import AssetDownloads
from vendors.dronemapper.nodes import ProcessingNodes
from vendors.dronemapper.projects import ProjectCalls
from vendors.dronemapper.tasks import TaskCalls
from vendors.dronemapper.tiles import TileLayers
from vendors.dronemapper.uploads import TaskUploads


class DroneMapperClient(ProjectCalls, TaskUploads, TaskCalls, AssetDownloads, TileLayers, ProcessingNodes):
    """One client of a DroneMapper (WebODM-style) server. Methods raise vendors.errors types; see the
    package docstring (vendors/dronemapper/__init__.py) for an example."""
