from django.apps import AppConfig


class ContentSourcesConfig(AppConfig):
    """The project as an app: its commands (serve, identity) and the API's templates."""

    name = "contentsources"
    default_auto_field = "django.db.models.BigAutoField"
