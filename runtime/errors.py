"""The typed errors a job ends with. Vendors' errors (vendors/errors.py) are typed the same way;
the guard (runtime/guard.py) turns anything else into InternalError."""
from __future__ import annotations

from typing import Any

from vendors.errors import rebuild_error


class JobError(Exception):
    """A job cannot succeed; the message names the input or the reason. Never retried. Its type,
    as the job's record shows it, is the class's name."""

    def __init__(self, message: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        data = {"type": type(self).__name__, "message": str(self)}
        if self.field:
            data["field"] = self.field
        return {**data, **self.details}

    def __reduce__(self):  # keep field and details through pickling (prefork pools)
        return (rebuild_error, (type(self), str(self), self.__dict__))


class InvalidInput(JobError):
    """An input the job was given cannot work: a bad value, a missing object or bucket, an output
    outside the fleet's bucket. `field` names the parameter."""


class BudgetExceeded(JobError):
    """The job could spend more credits than the fleet's budget has left."""


class NotConfigured(JobError):
    """The fleet lacks a setting the job needs (a vendor's credentials)."""


class TimedOut(JobError):
    """A task of the job ran past its time limit on every try."""


class InternalError(JobError):
    """An exception nobody expected; the traceback is in the worker's log."""


class JobStopped(Exception):
    """The job ended elsewhere (canceled, failed by another task) while this task worked for it."""


class FailureRecorded(Exception):
    """Raised after the ledger recorded the failure, so Celery and Flower show FAILURE too."""


def error_dict(exc: BaseException) -> dict[str, Any]:
    """The error a job or an item records: typed errors as they describe themselves."""
    if hasattr(exc, "to_dict"):
        return exc.to_dict()
    return InternalError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__).to_dict()
