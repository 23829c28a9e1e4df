"""``django.tasks`` backend that hands work to Huey.

Code enqueues through Django's task API (``@task`` / ``.enqueue()``); this
backend turns that into a Huey task, so the same code runs on the SQLite queue
consumed inside ``make run`` and on Redis with separate consumers in
production. Huey retries failed tasks; Django's result API is not kept.
"""

from __future__ import annotations

import logging
from typing import Any

from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskResult, TaskResultStatus
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.module_loading import import_string
from huey.contrib.djhuey import task as huey_task

logger = logging.getLogger(__name__)


@huey_task(retries=3, retry_delay=2, context=False, name="run_django_task")
def run_django_task(path: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    django_task: Task = import_string(path)
    django_task.call(*args, **kwargs)


class HueyTaskBackend(BaseTaskBackend):
    # ``run_after`` becomes Huey's ``eta``: consumers move a task from the
    # schedule to the queue within about a second of it.
    supports_defer = True
    supports_async_task = False
    supports_get_result = False
    supports_priority = False

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        if task.run_after is None:
            run_django_task(task.module_path, list(args), dict(kwargs))
        else:
            run_django_task.schedule(
                (task.module_path, list(args), dict(kwargs)), eta=task.run_after
            )
        return TaskResult(
            task=task,
            id=get_random_string(32),
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
