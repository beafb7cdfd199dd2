"""Settings of the content-sources project, read from the environment.

Every knob is documented in `.env.example`.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

from repositories.conf import KNOWN_KEYS as REPOSITORIES_KEYS
from tasks.conf import from_environment as tasking_from_environment
from tasks.conf import parse_duration, parse_integer

# Generic classes of Django and DRF (ModelAdmin[Task], QuerySet[Task]) subscriptable at run time, as
# the type checker sees them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)

# The task framework: what the environment sets of the `TASKING_*` variables (names as in
# the original service); tasks/conf.py holds their defaults.
try:
    TASKING = tasking_from_environment(os.environ)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None

if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    # A Unix-socket directory may be given percent-encoded as the host, as libpq allows.
    DATABASES["default"]["HOST"] = unquote(DATABASES["default"]["HOST"])
    EMBEDDED_DATABASE = False
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            "DATABASE_URL must point at PostgreSQL (postgres://...): the task queue needs "
            "FOR UPDATE SKIP LOCKED and LISTEN/NOTIFY."
        )
else:
    from contentsources.embedded_db import lazy_database_settings

    # Started by the first connection of a process, not here (contentsources/embedded_db).
    DATABASES = {"default": lazy_database_settings(BASE_DIR / ".pgdata")}
    EMBEDDED_DATABASE = True
# The queue's statements are prepared once per connection (tasks/queue.py binds them on the
# server); the ORM binds on the client and prepares nothing. Django turns preparing off unless
# it is given a threshold.
# PostgreSQL would then switch a prepared statement to a generic plan made from the statistics
# of that moment: one made while the queue was nearly empty reads every finished row at each
# `complete` once history grows (a pool started idle drained a burst 4 times slower). Each
# execution is planned for its own arguments instead; the parse is still saved.
_options = DATABASES["default"].setdefault("OPTIONS", {})
if TASKING.get("WAKEUPS") != "poll":
    _options.setdefault("prepare_threshold", 5)
    _options["options"] = f"{_options.get('options', '')} -c plan_cache_mode=force_custom_plan".strip()
else:
    # Behind PgBouncer in transaction mode, each transaction may run on another server
    # session: nothing may live in one. Nothing is prepared on the server (Django's default;
    # the queue follows the connection, tasks/queue.py), so no generic plan is ever made and
    # no startup option is needed (PgBouncer refuses them); no server-side cursor either, as
    # Django's documentation asks of transaction pooling.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
# A connection dropped without a word (a host gone, a NAT's idle timeout) must fail, not hang:
# a worker pool's heartbeat stuck on one would let another pool rescue live runs. TCP
# keepalives probe an idle connection after 10 s and give up after 3 unanswered probes 5 s
# apart; unacknowledged data fails it after 20 s. libpq ignores them on a Unix socket. A server
# that does not answer at all fails a connect after 5 s (/healthz answers within that, too).
for _key, _value in {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,
}.items():
    _options.setdefault(_key, _value)
# Connections are kept between requests and between tasks (each worker thread has its own),
# and checked with a cheap query before their first use in each, so a connection that died
# with a database restart is replaced instead of failing the request or task that finds it.
DATABASES["default"]["CONN_MAX_AGE"] = 600
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

SECRET_KEY = env.str("SECRET_KEY", default="")
# Or a file that holds it (a Docker secret; the image's key in its data volume, docker/entrypoint.sh).
if not SECRET_KEY and env.str("SECRET_KEY_FILE", default=""):
    try:
        SECRET_KEY = Path(env.str("SECRET_KEY_FILE")).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"SECRET_KEY_FILE cannot be read: {exc}") from None
    if not SECRET_KEY:
        raise ImproperlyConfigured(f"SECRET_KEY_FILE is empty: {env.str('SECRET_KEY_FILE')}")
if not SECRET_KEY:
    if not (DEBUG or EMBEDDED_DATABASE):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: set it in the environment (any long random string), or SECRET_KEY_FILE."
        )
    from django.core.management.utils import get_random_secret_key

    # A local demo (the embedded database, or DEBUG): a new key at each start, which the
    # processes this one starts inherit through the environment. `manage.py serve`'s gunicorn
    # workers must share it, or a session signed by one is refused by another.
    SECRET_KEY = os.environ["SECRET_KEY"] = get_random_secret_key()

ALLOWED_HOSTS = [
    host.strip() for host in env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"]) if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "contentsources",
    "tasks",
    "repositories",
]

MIDDLEWARE = [
    "contentsources.api.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "contentsources.middleware.SlashMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "contentsources.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "contentsources.wsgi.application"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Where snapshots keep their metadata files, content-addressed: a directory by default; any
# Django storage by its settings, e.g. SNAPSHOT_STORAGE_BACKEND=storages.backends.s3.S3Storage
# with SNAPSHOT_STORAGE_OPTIONS='{"bucket_name": "snapshots", "endpoint_url": "https://..."}'.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "snapshots": {
        "BACKEND": env.str("SNAPSHOT_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"),
        "OPTIONS": env.json("SNAPSHOT_STORAGE_OPTIONS", default={"location": str(BASE_DIR / ".snapshots")}),
    },
}
# Where snapshots are served as yum repositories: <prefix><org id>/<snapshot uuid>/.
CONTENT_URL_PREFIX = env.str("CONTENT_URL_PREFIX", default="content/").strip("/") + "/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# The repositories app (its yum layer): what the environment sets of the `REPOSITORIES_*`
# variables, each read by the type of its setting (a float is a duration); repositories/conf.py
# holds their defaults. REPOSITORIES_ALLOW_PRIVATE_URLS defaults to DEBUG or the embedded demo.
def _repositories_from_environment() -> dict[str, Any]:
    parsers: dict[type, Callable[[str], Any]] = {
        bool: lambda text: env.parse_value(text, bool),
        float: parse_duration,
        int: parse_integer,
        str: str,
    }
    values = {}
    for key, kind in REPOSITORIES_KEYS.items():
        text = os.environ.get(f"REPOSITORIES_{key}")
        if text is None:
            continue
        try:
            values[key] = parsers[kind](text)
        except ValueError as exc:
            raise ImproperlyConfigured(f"REPOSITORIES_{key}: {exc}") from None
    return values


REPOSITORIES = _repositories_from_environment()

# The REST API (contentsources/api): callers are identified by x-rh-identity; JSON only; every
# error in the original's envelope.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["contentsources.api.identity.IdentityAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["contentsources.api.renderers.JSON"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "contentsources.api.errors.handle_exception",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "content-sources",
    "DESCRIPTION": "Repositories, their snapshots, and the tasks that make them.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/content-sources/v1",
    "PREPROCESSING_HOOKS": ["contentsources.api.schema.drop_alias"],
    "APPEND_COMPONENTS": {"securitySchemes": {"identity": {"type": "apiKey", "in": "header", "name": "x-rh-identity"}}},
    "SECURITY": [{"identity": []}],
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# `text` (readable lines, `key=value` fields) or `json` (one object a line, the fields of their own).
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "()": "tasks.log.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "tasks.log.JsonFormatter"},
    },
    "filters": {"refusals": {"()": "contentsources.logs.RefusalsWithoutTraceback"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["refusals"]},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "tasks": {"level": LOG_LEVEL},
        "repositories": {"level": LOG_LEVEL},
        "contentsources": {"level": LOG_LEVEL},
    },
}
