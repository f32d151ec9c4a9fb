"""How an app asks the fleet for work. Needs only celery and redis installed."""
from geoqueue.client import GeoQueue, JobFailed, UnknownJob, WaitTimeout
from geoqueue.jobs import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, WAITING, Job

__all__ = ["GeoQueue", "Job", "JobFailed", "UnknownJob", "WaitTimeout",
           "QUEUED", "RUNNING", "WAITING", "SUCCEEDED", "FAILED", "CANCELED"]
