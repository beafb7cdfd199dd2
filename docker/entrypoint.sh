#!/bin/sh
# Entry point of the content-sources image (docker/Dockerfile): one image, one command per
# container, as docker/compose.yaml runs them.
#
#   migrate [ARGS...]   apply the database migrations and exit (`manage.py migrate --no-input`);
#                       compose's one-shot `migrate` service, which `api` and `worker` wait for.
#   api [ARGS...]       serve the API, the admin and the snapshots (contentsources.wsgi) with
#                       gunicorn on ${HOST:-0.0.0.0}:${PORT:-8000}, ${WEB_CONCURRENCY:-2} worker
#                       processes; ARGS go to gunicorn. WhiteNoise serves the static files.
#                       The rest of gunicorn's settings (access lines with the request id, no
#                       control socket) are contentsources/gunicorn_conf.py's, as for `make run`.
#   worker [ARGS...]    run the worker pool: `manage.py runworkers ARGS`, which touches
#                       $WORKER_HEALTH_FILE (when set) every second while the pool is alive
#                       (docker/healthcheck.py looks at its age).
#   anything else       run as is, e.g. `python manage.py createsuperuser`.
#
# The secret key: SECRET_KEY if set; else the settings read $SECRET_KEY_FILE, which the first
# container to start makes (a random key, mode 600) when it does not exist. The image points
# it into its data volume, so that every container of a compose project shares one key that
# survives restarts.
#
# The command replaces this shell (exec) and gets the container's SIGTERM itself: gunicorn
# finishes its requests, and the worker pool gives running tasks TASKING_SHUTDOWN_GRACE
# (default 10 s) before it requeues them and exits.
set -eu

cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ]; then
    echo "entrypoint: DATABASE_URL is not set. The image has no PostgreSQL of its own: set it to" \
        "a server, e.g. postgres://USER:PASSWORD@HOST:5432/NAME" >&2
    exit 64
fi

if [ -z "${SECRET_KEY:-}" ] && [ -n "${SECRET_KEY_FILE:-}" ] && [ ! -e "$SECRET_KEY_FILE" ]; then
    (
        umask 077
        if ! draft=$(mktemp "$SECRET_KEY_FILE.XXXXXX"); then
            echo "entrypoint: cannot make $SECRET_KEY_FILE: set SECRET_KEY, or SECRET_KEY_FILE to a" \
                "writable place" >&2
            exit 73
        fi
        python -c 'import secrets; print(secrets.token_urlsafe(50))' >"$draft"
        # link(2) never replaces a file: of two containers starting at once, one key wins.
        if ln "$draft" "$SECRET_KEY_FILE" 2>/dev/null; then
            echo "entrypoint: made a new secret key in $SECRET_KEY_FILE" >&2
        fi
        rm -f "$draft"
    )
fi

[ "$#" -gt 0 ] || set -- api
case "$1" in
migrate)
    shift
    exec python manage.py migrate --no-input "$@"
    ;;
api)
    shift
    exec gunicorn contentsources.wsgi:application \
        --config python:contentsources.gunicorn_conf \
        --bind "${HOST:-0.0.0.0}:${PORT:-8000}" \
        --workers "${WEB_CONCURRENCY:-2}" \
        "$@"
    ;;
worker)
    shift
    if [ -n "${WORKER_HEALTH_FILE:-}" ]; then
        # Dated 1970 until the pool first touches it: there from the start, it tells the
        # health check that this container is a worker, and a stale one.
        TZ=UTC0 touch -t 197001010000 "$WORKER_HEALTH_FILE"
        set -- --health-file "$WORKER_HEALTH_FILE" "$@"
    fi
    exec python manage.py runworkers "$@"
    ;;
*)
    exec "$@"
    ;;
esac
