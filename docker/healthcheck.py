"""The image's HEALTHCHECK, for both of its long-running commands (docker/entrypoint.sh).

- worker (a container with the file $WORKER_HEALTH_FILE, which the entrypoint makes):
  `runworkers --health-file` touches it every second while every thread of its pool runs and
  its listener is connected to the database. Healthy while it is younger than
  WORKER_STALE_AFTER seconds.
- api (any other): GET /healthz of its own gunicorn, which answers 200 when the database
  does. The Host header is the first name of ALLOWED_HOSTS, so that the request passes
  Django's host check whatever the deployment allows.

Exit 0 healthy, 1 not, with one line saying why (Docker keeps it in `docker inspect`).
"""

import os
import sys
import time
import urllib.error
import urllib.request

WORKER_STALE_AFTER = 15.0
HTTP_TIMEOUT = 4.0  # under the HEALTHCHECK's --timeout


def check_worker(path: str) -> str | None:
    touched = os.path.getmtime(path)
    if touched == 0:
        return "the worker pool has not reported itself alive yet"
    age = time.time() - touched
    if age > WORKER_STALE_AFTER:
        return f"the worker pool last reported itself alive {age:.0f}s ago"
    return None


def host_header() -> str:
    """A name that ALLOWED_HOSTS accepts (as settings.py reads it): its first, without a
    subdomain wildcard's dot; `localhost` when it allows any host or is unset."""
    for name in os.environ.get("ALLOWED_HOSTS", "").split(","):
        name = name.strip().lstrip(".")
        if name and name != "*":
            return name
    return "localhost"


def check_api() -> str | None:
    host = os.environ.get("HOST", "")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    url = f"http://{host}:{os.environ.get('PORT', '8000')}/healthz"
    request = urllib.request.Request(url, headers={"Host": host_header()})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT):
            return None
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except OSError as exc:
        return f"{url} did not answer: {exc}"


def main() -> int:
    worker_file = os.environ.get("WORKER_HEALTH_FILE", "")
    problem = check_worker(worker_file) if worker_file and os.path.exists(worker_file) else check_api()
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
