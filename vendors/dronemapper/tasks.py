"""A task once created: its status, options and console output, and the cancel, remove and restart actions."""
from __future__ import annotations

from vendors.dronemapper.connection import DroneMapperConnection, TaskId
from vendors.dronemapper.errors import VENDOR
from vendors.dronemapper.task_fields import Options, task_fields
from vendors.errors import VendorError


class TaskCalls(DroneMapperConnection):
    """The task routes, /api/projects/{id}/tasks/."""

    def get_task(self, project_id: int, task_id: TaskId) -> dict:
        return self._json("GET", self._task_path(project_id, task_id))

    def list_tasks(self, project_id: int, *, status: int | None = None, ordering: str | None = None) -> list[dict]:
        params = {k: v for k, v in (("status", status), ("ordering", ordering)) if v is not None}
        return self._json("GET", f"/api/projects/{int(project_id)}/tasks/", params=params)

    def update_task(self, project_id: int, task_id: TaskId, *, name: str | None = None, options: Options = None,
                    processing_node: int | None = None, auto_processing_node: bool | None = None) -> dict:
        fields = task_fields(name=name, options=options, processing_node=processing_node,
                             auto_processing_node=auto_processing_node)
        return self._json("PATCH", self._task_path(project_id, task_id), json=fields)

    def output(self, project_id: int, task_id: TaskId, line: int = 0) -> list[str]:
        """Console lines from `line` on; the next call's `line` is this one's plus len(result)."""
        text = self._json("GET", self._task_path(project_id, task_id, "output/"), params={"line": int(line)})
        return text.split("\n") if text else []

    def cancel(self, project_id: int, task_id: TaskId) -> None:
        self._action(project_id, task_id, "cancel")

    def remove(self, project_id: int, task_id: TaskId) -> None:
        """Remove the task and its assets (processing stops)."""
        self._action(project_id, task_id, "remove")

    def restart(self, project_id: int, task_id: TaskId, options: Options = None) -> None:
        """Re-run a failed, canceled or completed task, with new options if given. Until the vendor
        clears `pending_action`, the task still shows its old status (e.g. FAILED)."""
        if options is not None:
            self.update_task(project_id, task_id, options=options)
        self._action(project_id, task_id, "restart", idempotent=False)

    def _action(self, project_id: int, task_id: TaskId, action: str, idempotent: bool = True) -> None:
        result = self._json("POST", self._task_path(project_id, task_id, f"{action}/"), idempotent=idempotent)
        if not (isinstance(result, dict) and result.get("success")):
            raise VendorError(f"{VENDOR}: {action} not accepted: {result!r}", vendor=VENDOR)
