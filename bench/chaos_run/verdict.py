"""The chaos run's verdict: each job right, failed, unfinished or lost; the vendor side effects made
twice; what the fleet still holds once every job ended; and whether the run met the goal."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from geoqueue.job_record import Job

if TYPE_CHECKING:
    from bench.chaos_run.fleet import Run


@dataclass
class Submitted:
    label: str
    job_id: str
    check: Callable[[Run, Job], list[str]]  # what is wrong with the succeeded job (nothing: right)


@dataclass
class Outcome:
    label: str
    verdict: str                    # right, failed, unfinished, lost
    detail: str = ""


@dataclass
class Report:
    title: str
    outcomes: list[Outcome]
    duplicates: dict[str, dict[str, int]]
    seconds: float
    chaos: list[str] = field(default_factory=list)     # what was done to the fleet
    left_held: dict[str, int] = field(default_factory=dict)
    exited: dict[str, int] = field(default_factory=dict)      # processes that exited unasked: how often
    streams_cut: dict[str, str] = field(default_factory=dict)  # job label -> how its event stream fell short

    def count(self, verdict: str) -> int:
        return sum(1 for o in self.outcomes if o.verdict == verdict)

    @property
    def duplicate_total(self) -> int:
        return sum(sum(kinds.values()) for kinds in self.duplicates.values())

    @property
    def goal_met(self) -> bool:
        """Every job right (none failed, unfinished or lost), no duplicate, nothing left held, no
        process of the fleet exited unasked, and each ended job's event stream showed its end."""
        return self.count("right") == len(self.outcomes) and self.duplicate_total == 0 and not self.left_held \
            and not self.exited and not self.streams_cut


class Verdicts:
    """Run's verdicts (a mixin: they read the run's ledger, stack and sandbox)."""

    def verdicts(self) -> list[Outcome]:
        outcomes = []
        for s in self.submitted:
            job = self.queue.ledger.get(s.job_id)
            if job is None:
                outcomes.append(Outcome(s.label, "lost", "no record"))
            elif not job.finished:
                moved = job.updated > job.created
                outcomes.append(Outcome(s.label, "unfinished" if moved else "lost",
                                        f"{job.state}: {job.phase} {job.done}/{job.total}"))
            elif job.state != "succeeded":
                outcomes.append(Outcome(s.label, "failed", f"{job.state}: {job.error}"))
            else:
                try:
                    problems = s.check(self, job)
                except Exception as exc:  # a result missing what it should hold is wrong, not a crash of the run
                    problems = [f"{type(exc).__name__}: {exc}"]
                outcomes.append(Outcome(s.label, "failed" if problems else "right",
                                        "succeeded, but " + "; ".join(problems) if problems else ""))
        return outcomes

    def streams_cut(self) -> dict[str, str]:
        """Ended jobs whose event stream, followed over the API, did not show their end: label -> what it did."""
        ends = {s.job_id: (s.label, job.state) for s in self.submitted
                if (job := self.queue.ledger.get(s.job_id)) is not None and job.finished}
        problems = self.streams.not_followed_to_the_end({job_id: state for job_id, (_, state) in ends.items()})
        return {ends[job_id][0]: problem for job_id, problem in problems.items()}

    def left_held(self) -> dict[str, int]:
        """What the fleet still holds for the batch once every job ended: nothing, when each let go."""
        r = self.redis_client()
        try:
            return {name: n for name, n in {
                "jobs holding something (gq:holders)": r.scard("gq:holders"),
                "fan-outs open (gq:fanouts)": r.scard("gq:fanouts"),
                "Immersal jobs followed by the poller": r.scard("gq:immersal:active"),
                "DroneMapper surveys followed by the poller": r.scard("gq:dronemapper:active"),
                "Immersity credit reservations": r.hlen("gq:budget:immersity:reserved"),
                "Immersal workspace leases": len(list(r.scan_iter("gq:immersal:workspace:*"))),
            }.items() if n}
        finally:
            r.close()

    def duplicates(self) -> dict[str, dict[str, int]]:
        """Vendor side effects made more than once, from the sandbox's counters and state."""
        counters = self.stack.sandbox("GET", "/_sandbox/counters")
        status = {vendor: self.stack.sandbox("GET", f"/_sandbox/status/{vendor}")
                  for vendor in ("immersal", "mapillary")}

        def repeats(vendor: str, kind: str) -> int:
            return sum(n - 1 for key, n in counters[vendor].items() if key.startswith(kind + ":") and n > 1)

        maps_per_name = Counter(m["name"] for m in status["immersal"]["maps"].values())
        sessions_per_image = Counter(s["md5"] for key, s in status["mapillary"]["upload_sessions"].items()
                                     if key.endswith(".jpg") and s["handle"])
        clusters = len(status["mapillary"]["clusters"])
        return {
            "immersity": {"disparity calls per output": repeats("immersity", "disparity"),
                          "animation calls per output": repeats("immersity", "animation")},
            "immersal": {"captures per (job, run, index)": repeats("immersal", "capture"),
                         "constructs per job": sum(n - 1 for n in maps_per_name.values())},
            "dronemapper": {"task creations per job": repeats("dronemapper", "task_create"),
                            "project creations per job": repeats("dronemapper", "project_create")},
            "mapillary": {"upload sessions per image": sum(n - 1 for n in sessions_per_image.values()),
                          "clusters per sequence": max(0, clusters - self.expected_sequences),
                          "finish calls per sequence": repeats("mapillary", "finish")},
        }
