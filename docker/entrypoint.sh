#!/bin/sh
# Entry point of the content-sources image: apply the migrations, then run the command.
#
#   api [GUNICORN ARGS...]      serve the Django WSGI app (contentsources.wsgi:application)
#                               with gunicorn on 0.0.0.0:${PORT:-8000}. Extra arguments go to
#                               gunicorn (e.g. `api --workers 4`); so does GUNICORN_CMD_ARGS,
#                               and WEB_CONCURRENCY sets the number of gunicorn workers.
#   workers [RUNWORKERS ARGS...]
#                               run the task worker pool: `manage.py runworkers` (e.g.
#                               `workers --workers 8 --types diagnostics.noop`).
#   anything else               run as is, e.g. `python manage.py createsuperuser`.
#
# The command replaces this shell (exec), so it runs as PID 1 (or tini's child) and receives
# SIGTERM itself: gunicorn then finishes its requests, and the worker pool gives running
# tasks TASKING_SHUTDOWN_GRACE (default 10s) before it requeues them and exits.
set -eu

if [ -z "${DATABASE_URL:-}" ]; then
    echo "entrypoint: DATABASE_URL is not set. The image has no embedded PostgreSQL: set it to" \
        "a PostgreSQL server, e.g. postgres://USER:PASSWORD@HOST:5432/NAME" >&2
    exit 64
fi

if [ "$#" -eq 0 ]; then
    set -- api
fi

# `migrate --no-input` under a PostgreSQL advisory lock: the api and workers containers
# start together, and two concurrent migrate runs on a fresh database collide. The second
# one waits here, then finds nothing to do. The lock goes with the session, at exit.
python - <<'PY'
import django
from django.core.management import call_command
from django.db import connection

django.setup()
with connection.cursor() as cursor:
    cursor.execute("SELECT pg_advisory_lock(hashtext('contentsources.migrate'))")
call_command("migrate", interactive=False)
PY

case "$1" in
api)
    shift
    exec gunicorn contentsources.wsgi:application \
        --bind "0.0.0.0:${PORT:-8000}" \
        --access-logfile - \
        "$@"
    ;;
workers)
    shift
    exec python manage.py runworkers "$@"
    ;;
*)
    exec "$@"
    ;;
esac
