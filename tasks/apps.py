import django_stubs_ext
from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules

# The framework's admin subscripts Django's generic classes (ModelAdmin[Task]) as the type
# checker sees them; that needs them subscriptable at run time, before the admin is imported.
django_stubs_ext.monkeypatch()


class TasksConfig(AppConfig):
    name = "tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tasks import (
            checks,  # noqa: F401  (registers the system checks)
            observers,
        )
        from tasks.log_lines import TaskLogging
        from tasks.metrics import TaskMetrics

        observers.subscribe(TaskLogging())  # the pool's lines about tasks
        observers.subscribe(TaskMetrics())  # its Prometheus metrics

        # Every app's `handlers` module registers its task types, in the API and the workers alike.
        autodiscover_modules("handlers")
