from django.tasks import task

from . import services


@task()
def payment_event_process_task(event_id: int) -> str:
    return services.payment_event_process(event_id=event_id)
