"""A survey's project and vendor task, each created once (runtime/once.py): a marker just before the
create call, the id just after it. An attempt that finds the marker without an id (its worker died
in between) looks for what the cut-off call made before creating anything, and a claim keeps two
jobs from adopting the same project or task."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from runtime import Once
from tasks.dronemapper.records import Survey, log
from vendors.dronemapper.client import DroneMapperClient

CLOCK_SLACK_SECONDS = 300       # the vendor's clock against ours, when finding a task a cut-off call created


def task_name(job_id: str, name: str | None) -> str:
    return name or f"geoqueue-{job_id}"


def _adopt(survey: Survey, kind: str, candidates: Iterable[dict]) -> str | None:
    """The first candidate no other job has claimed, now this job's."""
    for candidate in candidates:
        if survey.claim(kind, candidate):
            log.warning("job %s: adopted %s %s that an interrupted attempt created", survey.job_id, kind,
                        candidate["id"])
            return str(candidate["id"])
    return None


def _create(survey: Survey, kind: str, create: Callable[[], dict]) -> Callable[[], str]:
    def call() -> str:
        created = create()
        survey.claim(kind, created)
        return str(created["id"])
    return call


def created_since(entry: dict, since: float) -> bool:
    """Whether the vendor made `entry` after `since` (our clock, less the slack between the clocks)."""
    try:
        return datetime.fromisoformat(str(entry.get("created_at"))).timestamp() >= since - CLOCK_SLACK_SECONDS
    except ValueError:
        return False


def project_for(job_id: str, vendor: DroneMapperClient, project_name: str | None) -> int:
    """The project this job creates (once), its description naming the job so that it can be found."""
    survey, description = Survey(job_id), f"created by geoqueue job {job_id}"
    name = project_name or f"geoqueue survey {job_id}"
    effect = Once(job_id).run(
        "dronemapper:project", _create(survey, "project", lambda: vendor.create_project(name, description)),
        lambda _since: _adopt(survey, "project", vendor.list_projects(description=description)))
    return int(effect.result)


def task_for(job_id: str, vendor: DroneMapperClient, project: int, name: str, create: Callable[[], dict]) -> str:
    """The vendor task this job creates (once) with `create`; a cut-off create is found by its name
    in the project."""
    survey = Survey(job_id)

    def find_by_name_since(since: float) -> str | None:
        return _adopt(survey, "task", (t for t in vendor.list_tasks(project)
                                       if t.get("name") == name and created_since(t, since)))

    task_id = Once(job_id).run("dronemapper:task", _create(survey, "task", create), find_by_name_since).result
    survey.set(task=task_id)
    survey.track()  # again: a cancel may have retired the job meanwhile, and the poller must clean up this task
    return task_id
