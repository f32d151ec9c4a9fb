"""The job runtime: how a task works for a job, ends it, and does a vendor side effect once.

Its public face, what a vendor package needs for nearly every job:

    task          the one task decorator (job, item, step, control and periodic tasks)
    PENDING       what a job's function returns when the job goes on in other tasks
    JobContext    one job as its task sees it: id, parameters, progress
    Once          a vendor side effect done once across redeliveries and kills
    on_job_end    register what a job lets go of when it ends
    the typed errors a job fails with

The fan-out (runtime.fanout), step machines (runtime.steps), leases (runtime.lease) and how a
job ends (runtime.ending) are imported from their modules by the few that drive them.
"""
from runtime.context import JobContext
from runtime.ending import on_job_end
from runtime.entry import PENDING
from runtime.errors import BudgetExceeded, InternalError, InvalidInput, JobError, NotConfigured, TimedOut
from runtime.once import CutOff, Once
from runtime.tasks import task

__all__ = ["task", "PENDING", "JobContext", "Once", "CutOff", "on_job_end",
           "JobError", "InvalidInput", "BudgetExceeded", "NotConfigured", "InternalError", "TimedOut"]
