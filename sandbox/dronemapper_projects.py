"""DroneMapper stand-in: the project routes."""
from __future__ import annotations

from flask import Response, request

from sandbox.dronemapper_api import _iso_now, _json, _ordered, _page, _project_fields, _request_data, not_found


class ProjectRoutes:
    """/api/projects/ and /api/projects/{id}/."""

    def _project(self, user: str | None, pid: int) -> dict:
        project = self.projects.get(pid)
        if project is None or project["owner"] != user:
            raise not_found()  # another user's project is hidden, not forbidden
        return project

    def _project_json(self, project: dict) -> dict:
        task_ids = [t.id for t in self.tasks.values() if t.project == project["id"]]
        return {"id": project["id"], "tasks": task_ids, "created_at": project["created_at"],
                "name": project["name"], "description": project["description"],
                "permissions": ["delete", "change", "add", "view"]}

    def _create_project(self, user: str) -> Response:
        fields = _project_fields(_request_data(), require_name=True)
        with self.lock:
            project = {"id": self.next_project_id, "owner": user, "created_at": _iso_now(),
                       "name": fields["name"], "description": fields.get("description", "")}
            self.next_project_id += 1
            self.projects[project["id"]] = project
            self.calls.add("project_create", project["name"])
            return _json(self._project_json(project), 201)

    def _get_project(self, user: str, pid: int) -> Response:
        with self.lock:
            return _json(self._project_json(self._project(user, pid)))

    def _update_project(self, user: str, pid: int) -> Response:
        fields = _project_fields(_request_data(), require_name=request.method == "PUT")
        with self.lock:
            project = self._project(user, pid)
            project.update(fields)
            return _json(self._project_json(project))

    def _delete_project(self, user: str, pid: int) -> Response:
        with self.lock:
            self._project(user, pid)
            del self.projects[pid]
            for task_id in [t.id for t in self.tasks.values() if t.project == pid]:
                del self.tasks[task_id]
            self.calls.add("project_delete", str(pid))
        return Response(status=204)

    def _list_projects(self, user: str) -> Response:
        args = request.args
        with self.lock:
            rows = [self._project_json(p) for p in self.projects.values() if p["owner"] == user]
        for key in ("id", "name", "description", "created_at"):
            if args.get(key):
                rows = [r for r in rows if str(r[key]) == args[key]]
        if args.get("search"):
            needle = args["search"].lower()
            rows = [r for r in rows if needle in r["name"].lower() or needle in r["description"].lower()]
        rows = _ordered(rows, args.get("ordering") or "-created_at")
        if "page" not in args and self.options["projects_pagination"] == "when_asked":
            return _json(rows)  # WebODM's own: paginated only when asked to
        return _json(_page(rows, args.get("page", "1"), int(self.options["page_size"])))
