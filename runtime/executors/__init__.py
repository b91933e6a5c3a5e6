"""Executors run a compiled pipeline: ``local`` (in-process pool) and ``celery``."""
