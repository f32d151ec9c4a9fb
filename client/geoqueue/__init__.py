"""How an app asks the fleet for work. Needs only celery and redis installed."""
from geoqueue.catalog import CATALOG
from geoqueue.client import GeoQueue, JobConflict, JobFailed, SubmitFailed, UnknownJob, WaitTimeout
from geoqueue.http_client import ApiRefused
from geoqueue.job_record import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, WAITING, Job
from geoqueue.params import InvalidParams

__all__ = ["GeoQueue", "ApiRefused", "Job", "JobFailed", "InvalidParams", "JobConflict", "SubmitFailed", "UnknownJob",
           "WaitTimeout", "CATALOG", "QUEUED", "RUNNING", "WAITING", "SUCCEEDED", "FAILED", "CANCELED"]
