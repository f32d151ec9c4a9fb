"""Plain HTTP clients, one per vendor, raising typed errors. No Celery here."""
