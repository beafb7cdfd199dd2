from django.apps import AppConfig


class RepositoriesConfig(AppConfig):
    name = "repositories"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from repositories import checks  # noqa: F401  (registers the system checks)
