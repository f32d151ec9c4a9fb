"""The fleet's settings, its Redis connection and redaction: importable without building the Celery app."""
