"""System checks for the task framework's settings."""

from django.core.checks import Error, register

from tasks.conf import tasking

# Connections a pool opens besides one per worker: dispatcher, heartbeat, janitor, listener, main.
POOL_OVERHEAD_CONNECTIONS = 5


@register()
def check_tasking_settings(app_configs, **kwargs):
    conf = tasking()
    errors = []
    if conf.heartbeat < 0.3:
        errors.append(Error("TASKING_HEARTBEAT must be at least 300ms.", id="tasks.E001"))
    if conf.worker_count < 1:
        errors.append(Error("TASKING_WORKER_COUNT must be at least 1.", id="tasks.E002"))
    if conf.worker_count + POOL_OVERHEAD_CONNECTIONS > conf.pool_limit:
        errors.append(
            Error(
                f"TASKING_POOL_LIMIT ({conf.pool_limit}) is below what {conf.worker_count} workers need "
                f"({conf.worker_count + POOL_OVERHEAD_CONNECTIONS} connections).",
                id="tasks.E003",
            )
        )
    if conf.payload_limit < 1:
        errors.append(Error("TASKING_PAYLOAD_LIMIT must be positive.", id="tasks.E004"))
    return errors
