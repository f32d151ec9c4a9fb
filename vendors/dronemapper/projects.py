"""Projects: create, read, update, delete, and the project list page by page."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from vendors.dronemapper.connection import DroneMapperConnection
from vendors.dronemapper.errors import VENDOR
from vendors.errors import InputError

PROJECT_FILTERS = ("id", "name", "description", "created_at", "search")


class ProjectCalls(DroneMapperConnection):
    """The project routes, /api/projects/."""

    def create_project(self, name: str, description: str = "") -> dict:
        return self._json("POST", "/api/projects/", json={"name": name, "description": description}, idempotent=False)

    def update_project(self, project_id: int, *, name: str | None = None, description: str | None = None) -> dict:
        fields = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
        return self._json("PATCH", f"/api/projects/{int(project_id)}/", json=fields)

    def delete_project(self, project_id: int) -> None:
        """Deletes the project and all its tasks, irreversibly."""
        self._call("DELETE", f"/api/projects/{int(project_id)}/")

    def get_project(self, project_id: int) -> dict:
        return self._json("GET", f"/api/projects/{int(project_id)}/")

    def projects_page(self, page: int = 1, *, ordering: str | None = None, **filters: Any) -> dict:
        """One page: {count, next, previous, results}. Filters: id, name, description, created_at, search."""
        unknown = set(filters) - set(PROJECT_FILTERS)
        if unknown:
            raise InputError(f"{VENDOR}: unknown project filter(s): {', '.join(sorted(unknown))}",
                             vendor=VENDOR, field=sorted(unknown)[0])
        params = {k: v for k, v in filters.items() if v is not None}
        if ordering:
            params["ordering"] = ordering
        return self._json("GET", "/api/projects/", params={**params, "page": int(page)})

    def iter_projects(self, *, ordering: str | None = None, **filters: Any) -> Iterator[dict]:
        """Every matching project, page after page (following `next`)."""
        page = 1
        while True:
            data = self.projects_page(page, ordering=ordering, **filters)
            if isinstance(data, list):  # a server that ignores ?page= answers the whole list
                yield from data
                return
            yield from data["results"]
            following = _page_number(data.get("next"))
            if following is None or following <= page:
                return
            page = following

    def list_projects(self, *, ordering: str | None = None, **filters: Any) -> list[dict]:
        return list(self.iter_projects(ordering=ordering, **filters))


def _page_number(next_url: str | None) -> int | None:
    """The page `next` points at. Only its page number is used: the host in it is whatever the
    server believes it is called (http behind a TLS proxy), and the token must not go there."""
    if not next_url:
        return None
    page = dict(parse_qsl(urlsplit(next_url).query)).get("page")
    return int(page) if page and page.isdigit() else None
