"""The fleet's processes, one definition for the Procfile, the local stack and deploy/."""
from __future__ import annotations

# name -> command; ${VAR} is filled from the environment (with the default after ':-').
PROCESSES = {
    "control": ("celery -A workers worker -Q control -n control@%h -c ${GEOQUEUE_CONTROL_CONCURRENCY:-4}"
                " -E --loglevel INFO"),
    "transfer": ("celery -A workers worker -Q transfer -n transfer@%h -P ${GEOQUEUE_TRANSFER_POOL:-threads}"
                 " -c ${GEOQUEUE_TRANSFER_CONCURRENCY:-100} -E --loglevel INFO"),
    "beat": "celery -A workers beat --loglevel INFO",
    "flower": "python -m workers.flower",
    "metrics": "python -m workers.metrics",
    "api": "python -m api",
    "webhooks": "python -m webhooks.delivery",
}
# The stand-ins (development and tests): the vendors, and S3 in a process of its own, as on the
# internet they are separate services that do not share one interpreter's lock.
STAND_INS = {
    "sandbox": "python -m sandbox --host ${SANDBOX_HOST:-127.0.0.1} --port ${SANDBOX_PORT:-8900}",
    "s3": "python -m sandbox.s3 --host ${SANDBOX_HOST:-127.0.0.1} --port ${SANDBOX_S3_PORT:-8901}",
}
