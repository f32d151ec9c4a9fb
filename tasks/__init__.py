"""What the fleet does: one module per vendor, thin Celery tasks over vendors/."""
