from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class TasksConfig(AppConfig):
    name = "tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tasks import checks  # noqa: F401  (registers the system checks)

        # Every app's `handlers` module registers its task types, in the API and the workers alike.
        autodiscover_modules("handlers")
