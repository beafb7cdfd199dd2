"""The project's Django app served over real HTTP on 127.0.0.1, by the server `runserver` uses.

Unlike `LiveServerTestCase`'s, it lives for one test: `stop()` ends the accept loop, then joins
every request thread (each gives up a silent keep-alive connection after SOCKET_TIMEOUT), and
each request thread closes its database connections when its request ends.
"""

import threading
from typing import Any

from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

# A request thread blocked this long on a connection that sends nothing gives up on it.
SOCKET_TIMEOUT = 10.0


class LiveApp:
    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.set_app(WSGIHandler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="live-django-app"
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> "LiveApp":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()  # joins the request threads
        self._thread.join(timeout=10)


class _Server(ThreadedWSGIServer):
    # Request threads are joined by server_close, not left to die with the process.
    daemon_threads = False
    block_on_close = True


class _Handler(WSGIRequestHandler):
    timeout = SOCKET_TIMEOUT

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except TimeoutError:
            self.close_connection = True  # a keep-alive connection that went quiet

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean
