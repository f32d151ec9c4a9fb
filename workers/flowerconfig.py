"""Flower's configuration file (`celery flower --conf=workers/flowerconfig.py`).

`format_task` masks secrets in what Flower's pages show of a task's args, kwargs and result, text
or nested values (defense in depth: tasks carry references, not secrets). A running job's progress
arrives in custom `task-progress` events and shows in the result column (see runtime/context.py).
"""
from __future__ import annotations

from config import redaction
from config.settings import get_settings

_SECRETS = redaction.secret_values(get_settings())


def format_task(task):
    for name in ("args", "kwargs", "result", "exception", "traceback"):
        value = getattr(task, name, None)
        if value is not None:
            setattr(task, name, redaction.redact_value(value, _SECRETS))
    return task


# Tasks kept in memory; older ones drop off (the job ledger keeps the records).
max_tasks = 20000

# kwargs show a job's parameters (references only), result shows a running job's progress.
tasks_columns = "name,uuid,state,kwargs,result,received,started,runtime,worker"
