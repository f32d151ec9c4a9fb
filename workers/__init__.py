"""How the fleet runs: `celery -A workers worker|beat|flower`."""
from celery.signals import after_setup_logger, after_setup_task_logger

from config.settings import get_settings
from workers import malloc, watchdog  # noqa: F401  (their signals: malloc arenas, time limits in a threads pool)
from workers.celery_app import create_app

app = create_app()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger, **_kwargs):
    from config import redaction

    redaction.install(logger, get_settings())
