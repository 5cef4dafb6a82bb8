"""Retention: delete finished history older than ``RETENTION_DAYS``, in bounded batches."""
