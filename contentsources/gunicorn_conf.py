"""gunicorn's settings for the web process, shared by `manage.py serve` (behind `make run`) and
the container's `api` (docker/entrypoint.sh): `gunicorn --config python:contentsources.gunicorn_conf`."""

# Access lines on stdout, in gunicorn's default format followed by the request's id as the
# response echoes it (contentsources/api/request_id.py): an access line can then be found with
# the other lines of its request and of the tasks it enqueued.
accesslog = "-"
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" request_id=%({x-rh-insights-request-id}o)s'
)
# No control socket: its default path is the user's ($XDG_RUNTIME_DIR or ~/.gunicorn), not
# the server's, so that two servers of one user would fight over it; nothing here uses it.
control_socket_disable = True
