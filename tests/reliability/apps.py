from django.apps import AppConfig


class ReliabilityConfig(AppConfig):
    """The suite's ledger table and task types, installed by tests/settings.py only."""

    name = "tests.reliability"
    label = "reliability"
    default_auto_field = "django.db.models.BigAutoField"
