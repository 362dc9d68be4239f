"""The worker app configured from the environment: ``celery -A tasks.celery_worker worker -Q ...``."""

from __future__ import annotations

from tasks.worker import create_worker_app

app = create_worker_app()
