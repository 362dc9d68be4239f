"""The Celery configuration that front ends (which only send) and workers (which run) share."""

from __future__ import annotations

from celery import Celery

from tasks.routing import PRIORITY_LEVELS
from tasks.settings import Settings

__all__ = ["PING_TASK", "RENDER_TASK", "make_celery"]

RENDER_TASK = "dreamloom.render"
PING_TASK = "dreamloom.ping"  # a bare round trip through the broker, for measurements and checks


def make_celery(settings: Settings, name: str = "dreamloom") -> Celery:
    app = Celery(name, broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # GPU jobs are long: take one job at a time, acknowledge it only when it is finished, and give it
        # back to the queue when the worker process dies under it.
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options={
            # Above the longest job, or Redis would hand a running job to a second worker.
            "visibility_timeout": settings.visibility_timeout,
            # Strict priorities (0 first): tasks.routing encodes fast before relax, and each user's first
            # job before anyone's second.
            "priority_steps": list(range(PRIORITY_LEVELS)),
            "queue_order_strategy": "priority",
        },
        broker_connection_retry_on_startup=True,
        task_create_missing_queues=True,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child or None,
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024 or None,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app
